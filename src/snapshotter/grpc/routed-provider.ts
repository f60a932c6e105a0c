/**
 * A `LayerProvider` wrapper that applies the plugin's registry routes (config.ts `routeFor`): it rewrites
 * each layer's image reference to the mirror (the soci-proxy) when one is configured for the reference's
 * host, and hands it to one inner provider per distinct (host, plain HTTP, credentials), created on first
 * use by `factory`. containerd passes the *user's* reference in its labels (containerd-integration.md §4.4),
 * so this is where a pull of `docker.io/library/python` gets read through the proxy.
 */
import type { LayerProvider, LayerRef, MountedLayer } from '../core/types.js';
import { parseImageRef } from '../core/index.js';
import { routeFor, type HostRoute, type SnapshotterConfig } from './config.js';

export class RoutedProvider implements LayerProvider {
  readonly #config: SnapshotterConfig;
  readonly #factory: (route: HostRoute) => LayerProvider;
  readonly #inner = new Map<string, LayerProvider>();

  constructor(config: SnapshotterConfig, factory: (route: HostRoute) => LayerProvider) {
    this.#config = config;
    this.#factory = factory;
  }

  /** The provider and rewritten reference for `ref`. */
  route(ref: LayerRef): { provider: LayerProvider; ref: LayerRef } {
    const parsed = parseImageRef(ref.imageRef, this.#config.defaultHost);
    const r = routeFor(this.#config, parsed.host);
    const sep = parsed.reference.includes(':') ? '@' : ':';
    const imageRef = `${r.host}/${r.repoPrefix}${parsed.repo}${sep}${parsed.reference}`;
    const key = JSON.stringify([r.host, r.plainHttp, r.credentials?.username ?? '', r.credentials?.password ?? '']);
    let provider = this.#inner.get(key);
    if (provider === undefined) {
      provider = this.#factory(r);
      this.#inner.set(key, provider);
    }
    return { provider, ref: { ...ref, imageRef } };
  }

  mountLazy(ref: LayerRef, dir: string): Promise<MountedLayer | undefined> {
    const r = this.route(ref);
    return r.provider.mountLazy(r.ref, dir);
  }

  unpack(ref: LayerRef, dir: string): Promise<MountedLayer> {
    const r = this.route(ref);
    return r.provider.unpack(r.ref, dir);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#inner.values()].map((p) => p.close()));
  }
}
