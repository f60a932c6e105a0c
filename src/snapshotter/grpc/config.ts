/**
 * The containerd plugin's settings (`soci-proxy snapshotter --config FILE`, JSON), typed and validated
 * once in the composition root, with documented defaults. `registries` maps a registry host as it appears
 * in image references to how the snapshotter reaches it, hosts.toml style: a `mirror` endpoint (the
 * soci-proxy URL; `http://` means plain HTTP) optionally in name-prefixed mode (`<mirror>/<host>/<repo>`),
 * a `plainHttp` flag and credentials. Hosts not listed are reached directly (plain HTTP for localhost and
 * 127.0.0.0/8, as containerd does). See deploy/containerd/README.md for an example.
 */
export interface RegistryHostConfig {
  /** `http[s]://host[:port]` of a soci-proxy (or any registry mirror) to read this host's images from. */
  mirror?: string | undefined;
  /** Name-prefixed mode: read `<mirror>/<original host>/<repo>` (the proxy picks the upstream from the path). */
  namePrefix?: boolean | undefined;
  /** Plain HTTP to this host (or to its mirror; a mirror's scheme decides by default). */
  plainHttp?: boolean | undefined;
  username?: string | undefined;
  password?: string | undefined;
}

export interface SnapshotterConfig {
  /** Registry host for image references without one (default docker.io). */
  defaultHost: string;
  registries: Record<string, RegistryHostConfig>;
  /** Bound of each layer's span files on disk (default 1 GiB). */
  spanCacheBytes: number;
  /** Background fetch: one span every `periodMs` (0 = off; default 100), paused `quietMs` after a new mount (default 2000). */
  backgroundFetch: { periodMs: number; quietMs: number };
  /** Deadlines: one FUSE read (default 20 s), one span HTTP attempt (10 s), one registry request (30 s). */
  timeouts: { readMs: number; fetchMs: number; requestMs: number };
  /** Further attempts after a transient failure (default 2). */
  retries: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export const DEFAULT_CONFIG: SnapshotterConfig = {
  defaultHost: 'docker.io',
  registries: {},
  spanCacheBytes: 1024 ** 3,
  backgroundFetch: { periodMs: 100, quietMs: 2000 },
  timeouts: { readMs: 20_000, fetchMs: 10_000, requestMs: 30_000 },
  retries: 2,
  logLevel: 'info',
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function check(obj: Obj, where: string, known: readonly string[]): void {
  for (const k of Object.keys(obj)) if (!known.includes(k)) throw new Error(`${where}: unknown key ${JSON.stringify(k)}`);
}

function num(v: unknown, where: string, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${where} must be a non-negative number`);
  return v;
}

function optStr(v: unknown, where: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new Error(`${where} must be a non-empty string`);
  return v;
}

function optBool(v: unknown, where: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new Error(`${where} must be true or false`);
  return v;
}

/** Validates a parsed config file; throws one clear error for the first bad value. */
export function parseSnapshotterConfig(raw: unknown, source = 'config'): SnapshotterConfig {
  if (raw === undefined) return structuredClone(DEFAULT_CONFIG);
  if (!isObj(raw)) throw new Error(`${source} must hold a JSON object`);
  check(raw, source, ['defaultHost', 'registries', 'spanCacheBytes', 'backgroundFetch', 'timeouts', 'retries', 'logLevel']);
  const d = DEFAULT_CONFIG;
  const registries: Record<string, RegistryHostConfig> = {};
  if (raw.registries !== undefined) {
    if (!isObj(raw.registries)) throw new Error(`${source}: registries must be an object`);
    for (const [host, v] of Object.entries(raw.registries)) {
      const w = `${source}: registries.${host}`;
      if (!isObj(v)) throw new Error(`${w} must be an object`);
      check(v, w, ['mirror', 'namePrefix', 'plainHttp', 'username', 'password']);
      const mirror = optStr(v.mirror, `${w}.mirror`);
      if (mirror !== undefined && !/^https?:\/\/[^/]+\/?$/.test(mirror)) throw new Error(`${w}.mirror must be http(s)://host[:port]`);
      registries[host] = {
        mirror: mirror?.replace(/\/$/, ''),
        namePrefix: optBool(v.namePrefix, `${w}.namePrefix`),
        plainHttp: optBool(v.plainHttp, `${w}.plainHttp`),
        username: optStr(v.username, `${w}.username`),
        password: typeof v.password === 'string' ? v.password : undefined,
      };
    }
  }
  const bg = raw.backgroundFetch ?? {};
  if (!isObj(bg)) throw new Error(`${source}: backgroundFetch must be an object`);
  check(bg, `${source}: backgroundFetch`, ['periodMs', 'quietMs']);
  const t = raw.timeouts ?? {};
  if (!isObj(t)) throw new Error(`${source}: timeouts must be an object`);
  check(t, `${source}: timeouts`, ['readMs', 'fetchMs', 'requestMs']);
  const level = raw.logLevel ?? d.logLevel;
  if (level !== 'debug' && level !== 'info' && level !== 'warn' && level !== 'error') throw new Error(`${source}: logLevel must be debug, info, warn or error`);
  return {
    defaultHost: optStr(raw.defaultHost, `${source}: defaultHost`) ?? d.defaultHost,
    registries,
    spanCacheBytes: num(raw.spanCacheBytes, `${source}: spanCacheBytes`, d.spanCacheBytes),
    backgroundFetch: { periodMs: num(bg.periodMs, `${source}: backgroundFetch.periodMs`, d.backgroundFetch.periodMs), quietMs: num(bg.quietMs, `${source}: backgroundFetch.quietMs`, d.backgroundFetch.quietMs) },
    timeouts: {
      readMs: num(t.readMs, `${source}: timeouts.readMs`, d.timeouts.readMs),
      fetchMs: num(t.fetchMs, `${source}: timeouts.fetchMs`, d.timeouts.fetchMs),
      requestMs: num(t.requestMs, `${source}: timeouts.requestMs`, d.timeouts.requestMs),
    },
    retries: num(raw.retries, `${source}: retries`, d.retries),
    logLevel: level,
  };
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$/;

/** Where and how one registry host is reached after applying `registries` (mirror rewrite, plain HTTP, credentials). */
export interface HostRoute {
  /** Host to contact. */
  host: string;
  /** Prefix to put before the repository (name-prefixed mirror mode), '' otherwise. */
  repoPrefix: string;
  plainHttp: boolean;
  credentials?: { username: string; password: string } | undefined;
}

export function routeFor(config: SnapshotterConfig, host: string): HostRoute {
  const c = config.registries[host] ?? {};
  const creds = c.username !== undefined ? { username: c.username, password: c.password ?? '' } : undefined;
  if (c.mirror !== undefined) {
    const url = new URL(c.mirror);
    return { host: url.host, repoPrefix: c.namePrefix ? `${host}/` : '', plainHttp: c.plainHttp ?? url.protocol === 'http:', credentials: creds };
  }
  return { host, repoPrefix: '', plainHttp: c.plainHttp ?? LOOPBACK.test(host), credentials: creds };
}
