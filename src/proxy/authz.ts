/**
 * Access control for synthesized artifacts. A zTOC, SOCI index or rewritten manifest derives from an
 * upstream manifest or layer; before serving it, the proxy asks the upstream (a HEAD with the client's own
 * credentials, in the requested repository) whether this client may read that source. Positive answers
 * are remembered briefly per (upstream, repository, source, credential); refusals are not remembered.
 * So a client the upstream would refuse never receives artifacts another client warmed into the cache.
 */
import { LRUCache } from 'lru-cache';
import { credentialKey, type ClientCredentials, type UpstreamRegistry } from './contracts.js';
import type { SourceRef } from './artifacts.js';
import { MediaType } from '../oci/media-types.js';

function accessKey(upstream: UpstreamRegistry, repo: string, source: SourceRef, credentials: ClientCredentials): string {
  return `${upstream.name}\u0000${repo}\u0000${source.kind}:${source.digest}\u0000${credentialKey(credentials)}`;
}

export class AccessChecker {
  readonly #allowed: LRUCache<string, true>;

  constructor(opts: { ttlMs: number; max?: number }) {
    this.#allowed = new LRUCache({ max: opts.max ?? 10_000, ttl: Math.max(1, opts.ttlMs) });
  }

  /** Resolves when the client may read `source` in `repo`; otherwise throws the upstream's OciError. */
  async check(upstream: UpstreamRegistry, repo: string, source: SourceRef, credentials: ClientCredentials): Promise<void> {
    const key = accessKey(upstream, repo, source, credentials);
    if (this.#allowed.get(key)) return;
    if (source.kind === 'manifest') {
      await upstream.getManifest(repo, source.digest, {
        accept: [MediaType.ociManifest, MediaType.dockerManifest, MediaType.ociIndex, MediaType.dockerManifestList],
        method: 'HEAD',
        credentials,
      });
    } else {
      const r = await upstream.getBlob(repo, source.digest, { method: 'HEAD', credentials });
      r.body?.destroy?.();
    }
    this.#allowed.set(key, true);
  }

  /** Records that a client just read `source` successfully from upstream (no need to ask again). */
  remember(upstream: UpstreamRegistry, repo: string, source: SourceRef, credentials: ClientCredentials): void {
    this.#allowed.set(accessKey(upstream, repo, source, credentials), true);
  }
}
