/**
 * Typed configuration of the upstream registries the proxy may contact, with documented defaults. The
 * composition root parses flags/env (`NAME=URL`) into `UpstreamConfig`s once; everything below works on the
 * normalized form returned by `normalizeUpstream`, which fills defaults and applies Docker Hub's naming
 * (the name `docker.io` talks to `https://registry-1.docker.io`). Only upstreams listed here are ever
 * contacted: repository names are routed to one of them by `resolveRoute` and never turn into hosts.
 */
import { OciError } from '../../oci/errors.js';

export interface UpstreamTimeouts {
  /** TCP + TLS connect, ms. Default 10 000. */
  connectMs?: number;
  /** From request sent to response headers received, ms. Default 30 000. */
  headersMs?: number;
  /** Longest silence between two body chunks, ms (a stalled body fails, it never hangs). Default 60 000. */
  bodyMs?: number;
}

export interface UpstreamRetry {
  /** Total tries of one idempotent request (1 = no retry). Default 3. */
  attempts?: number;
  /** First backoff delay, doubled per try with ±50 % jitter, ms. Default 200. */
  baseDelayMs?: number;
  /** Cap on one backoff delay, and on an honoured Retry-After, ms. Default 5 000. */
  maxDelayMs?: number;
}

export interface UpstreamConfig {
  /** The host a client writes in image references: `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  name: string;
  /**
   * The endpoint, `https://host[:port]` or `http://host[:port]` (plain http only when written so).
   * Default `https://<name>`, except `docker.io` → `https://registry-1.docker.io`.
   */
  url?: string;
  /** Basic credentials for this upstream (token requests or Basic challenges). Default none (anonymous). */
  username?: string;
  password?: string;
  /** PEM file of extra CAs trusted for this upstream, in addition to Node's bundled roots. Default none. */
  caFile?: string;
  /** Skip TLS certificate verification. Default false; meant for tests only. */
  insecure?: boolean;
  /** Follow 3xx redirects of GET/HEAD (blob storage, possibly on another host). Default true. */
  followRedirects?: boolean;
  /** Longest redirect chain followed. Default 5. */
  maxRedirects?: number;
  /** Bound on a manifest body, bytes. Default 4 MiB. */
  maxManifestBytes?: number;
  timeouts?: UpstreamTimeouts;
  retry?: UpstreamRetry;
}

/** An upstream with every default filled in. */
export interface Upstream {
  name: string;
  /** Origin of the endpoint, e.g. `https://registry-1.docker.io` (no path, no trailing slash). */
  origin: string;
  /** True when the endpoint is plain http (redirects to http are allowed only then). */
  plainHttp: boolean;
  /** Docker Hub naming: single-component repositories get `library/`. */
  dockerHub: boolean;
  username: string | undefined;
  password: string | undefined;
  caFile: string | undefined;
  insecure: boolean;
  followRedirects: boolean;
  maxRedirects: number;
  maxManifestBytes: number;
  timeouts: Required<UpstreamTimeouts>;
  retry: Required<UpstreamRetry>;
}

/** The upstreams of one proxy: named ones (matched by name) and an optional default for everything else. */
export interface UpstreamsConfig {
  upstreams: readonly UpstreamConfig[];
  /** Name of the upstream that serves names with no configured prefix/ns. Default: none (such names are unknown). */
  defaultUpstream?: string;
}

export const UPSTREAM_DEFAULTS = {
  followRedirects: true,
  maxRedirects: 5,
  maxManifestBytes: 4 * 1024 * 1024,
  timeouts: { connectMs: 10_000, headersMs: 30_000, bodyMs: 60_000 },
  retry: { attempts: 3, baseDelayMs: 200, maxDelayMs: 5_000 },
} as const;

const DOCKER_HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const NAME_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$/i;

export function normalizeUpstream(cfg: UpstreamConfig): Upstream {
  const name = cfg.name.toLowerCase();
  if (!NAME_RE.test(name)) throw new OciError('NAME_INVALID', `invalid upstream name ${JSON.stringify(cfg.name)}`);
  const dockerHub = DOCKER_HUB_NAMES.has(name);
  let raw = cfg.url ?? `https://${name}`;
  if (dockerHub && cfg.url === undefined) raw = 'https://registry-1.docker.io';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new OciError('NAME_INVALID', `invalid upstream URL for ${name}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new OciError('NAME_INVALID', `upstream ${name}: URL must be http(s)`);
  if (url.username || url.password) throw new OciError('NAME_INVALID', `upstream ${name}: put credentials in username/password, not the URL`);
  // https://docker.io itself serves no registry API; talk to registry-1 like docker does.
  const origin = dockerHub && DOCKER_HUB_NAMES.has(url.host) ? 'https://registry-1.docker.io' : url.origin;
  return {
    name,
    origin,
    plainHttp: url.protocol === 'http:',
    dockerHub,
    username: cfg.username,
    password: cfg.password,
    caFile: cfg.caFile,
    insecure: cfg.insecure ?? false,
    followRedirects: cfg.followRedirects ?? UPSTREAM_DEFAULTS.followRedirects,
    maxRedirects: cfg.maxRedirects ?? UPSTREAM_DEFAULTS.maxRedirects,
    maxManifestBytes: cfg.maxManifestBytes ?? UPSTREAM_DEFAULTS.maxManifestBytes,
    timeouts: { ...UPSTREAM_DEFAULTS.timeouts, ...cfg.timeouts },
    retry: { ...UPSTREAM_DEFAULTS.retry, ...cfg.retry },
  };
}
