/**
 * Binds the undici upstream client (`./upstream`) to the narrow `UpstreamRegistry`/`UpstreamRouter`
 * contracts the proxy core consumes, and times every upstream call for the metrics.
 */
import type { Readable } from 'node:stream';
import { compileRoutes, resolveRoute, UpstreamClient, type Upstream, type UpstreamsConfig } from './upstream/index.js';
import type { BlobResponse, ClientCredentials, ManifestResponse, UpstreamRegistry, UpstreamRouter } from './contracts.js';
import type { ProxyEvents } from './events.js';
import { errorCode } from '../oci/errors.js';

function statusOf(err: unknown): number {
  const s = (err as { status?: unknown })?.status;
  return typeof s === 'number' ? s : errorCode(err) ? 500 : 599;
}

export class UndiciUpstream implements UpstreamRegistry {
  readonly name: string;
  readonly client: UpstreamClient;
  readonly #events: ProxyEvents;

  constructor(upstream: Upstream, events: ProxyEvents) {
    this.name = upstream.name;
    this.client = new UpstreamClient(upstream);
    this.#events = events;
  }

  async #timed<T extends { status: number }>(op: 'manifest' | 'blob' | 'tags', fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      const r = await fn();
      this.#events.publish({ type: 'upstream', upstream: this.name, op, status: r.status, ms: performance.now() - t0 });
      return r;
    } catch (err) {
      this.#events.publish({ type: 'upstream', upstream: this.name, op, status: statusOf(err), ms: performance.now() - t0 });
      throw err;
    }
  }

  async getManifest(repo: string, reference: string, opts: { accept: readonly string[]; method: 'GET' | 'HEAD'; credentials: ClientCredentials; signal?: AbortSignal }): Promise<ManifestResponse> {
    const r = await this.#timed('manifest', () =>
      this.client.getManifest(repo, reference, { accept: opts.accept, method: opts.method, clientAuth: opts.credentials.authorization, signal: opts.signal }),
    );
    return { mediaType: r.mediaType, digest: r.digest, size: r.size, bytes: r.bytes };
  }

  async getBlob(repo: string, digest: string, opts: { method: 'GET' | 'HEAD'; range?: string | undefined; credentials: ClientCredentials; signal?: AbortSignal }): Promise<BlobResponse> {
    if (opts.method === 'HEAD') {
      const h = await this.#timed('blob', () => this.client.headBlob(repo, digest, { clientAuth: opts.credentials.authorization, signal: opts.signal }));
      const size = h.size;
      if (opts.range && size !== undefined) return { status: 200, size, contentType: h.headers['content-type'], rangeIgnored: true };
      return { status: 200, size, contentType: h.headers['content-type'] };
    }
    const r = await this.#timed('blob', () =>
      this.client.getBlob(repo, digest, { range: opts.range, clientAuth: opts.credentials.authorization, signal: opts.signal }),
    );
    const len = r.headers['content-length'];
    const cr = r.headers['content-range'];
    const total = cr ? /\/(\d+)$/.exec(cr)?.[1] : undefined;
    const size = r.status === 206 ? (total !== undefined ? Number(total) : undefined) : len !== undefined ? Number(len) : undefined;
    return {
      status: r.status,
      size,
      contentRange: cr,
      contentType: r.headers['content-type'],
      body: r.body as Readable,
      rangeIgnored: r.rangeIgnored,
    };
  }

  async listTags(repo: string, query: { n?: number; last?: string }, credentials: ClientCredentials): Promise<{ tags: string[]; next?: { n?: number; last?: string } }> {
    const r = await this.#timed('tags', async () => ({ status: 200, ...(await this.client.listTags(repo, query, { clientAuth: credentials.authorization })) }));
    return { tags: r.tags, next: r.next };
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export class ConfiguredRouter implements UpstreamRouter {
  readonly #table: ReturnType<typeof compileRoutes>;
  readonly #clients = new Map<string, UndiciUpstream>();

  constructor(config: UpstreamsConfig, events: ProxyEvents) {
    this.#table = compileRoutes(config);
    for (const up of this.#table.byName.values()) this.#clients.set(up.name, new UndiciUpstream(up, events));
  }

  route(name: string, ns?: string): { upstream: UpstreamRegistry; repository: string } | undefined {
    const r = resolveRoute(this.#table, name, ns);
    if (!r) return undefined;
    const client = this.#clients.get(r.upstream.name);
    return client ? { upstream: client, repository: r.repository } : undefined;
  }

  get defaultUpstream(): UpstreamRegistry | undefined {
    return this.#table.default ? this.#clients.get(this.#table.default.name) : undefined;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#clients.values()].map((c) => c.close()));
  }
}
