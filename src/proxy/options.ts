/**
 * The settings of `soci-proxy serve`: one schema that the flag parser, the environment (`SOCI_PROXY_*`),
 * the config file (JSON) and the README's configuration reference are all derived from, so they cannot
 * drift. Precedence: flag > environment > config file > default. Every value is validated once, at
 * start, with a message that names the setting and the wrong value.
 */

import { parseByteSize } from '../oci/units.js';

export type OptionType = 'string' | 'int' | 'bytes' | 'seconds' | 'bool' | 'enum' | 'list';

export interface OptionSpec {
  /** Flag name without dashes; the config-file key is its camelCase form, the env var SOCI_PROXY_<UPPER_SNAKE>. */
  flag: string;
  type: OptionType;
  default?: string | number | boolean | string[];
  values?: readonly string[];
  description: string;
}

export const SERVE_OPTIONS: readonly OptionSpec[] = [
  { flag: 'listen', type: 'string', default: '127.0.0.1:5000', description: 'Address to serve the registry API on (HOST:PORT). Use 0.0.0.0:5000 in a container.' },
  { flag: 'upstream', type: 'list', default: [], description: 'Upstream registry: URL (the default upstream) or NAME=URL (e.g. docker.io=https://registry-1.docker.io). Repeatable. Only these are ever contacted.' },
  { flag: 'upstream-username', type: 'list', default: [], description: 'NAME=USER: basic credentials for an upstream (used for its token service or Basic auth).' },
  { flag: 'upstream-password', type: 'list', default: [], description: 'NAME=PASSWORD for --upstream-username. Prefer the environment or the config file to flags.' },
  { flag: 'upstream-ca-file', type: 'list', default: [], description: 'NAME=PATH: extra CA certificates (PEM) trusted for that upstream, beside the system CAs.' },
  { flag: 'config', type: 'string', description: 'JSON config file; keys are the camelCase flag names (e.g. {"indexMode":"background","upstream":["http://127.0.0.1:5000"]}).' },
  { flag: 'cache-dir', type: 'string', default: './.soci-proxy-cache', description: 'Directory of the embedded on-disk cache (content-addressed, survives restarts).' },
  { flag: 'cache-max-bytes', type: 'bytes', default: 10 * 1024 ** 3, description: 'Bound of the on-disk cache; least recently used artifacts are evicted past it.' },
  { flag: 'cache-blobs', type: 'bool', default: true, description: 'Pull-through blob cache: keep every whole upstream blob the proxy streamed and verified (to a client, or while indexing a layer) in the on-disk cache and serve later GETs, Ranges and HEADs of it locally, after the upstream accepted the client for it. Shares --cache-max-bytes and its LRU eviction with the SOCI artifacts; a blob larger than half of it is not kept. Never stored in Redis.' },
  { flag: 'memory-cache-bytes', type: 'bytes', default: 256 * 1024 ** 2, description: 'Bound of the in-process cache tier.' },
  { flag: 'redis', type: 'string', description: 'Redis URL shared by replicas (redis://, rediss://; sentinel/cluster as ioredis accepts). Without it the cache is local only.' },
  { flag: 'lock-ttl', type: 'seconds', default: 30, description: 'Expiry of a replica\'s indexing lock in Redis (renewed every third of it while the job runs); a crashed replica delays the others by at most this.' },
  { flag: 'span-size', type: 'bytes', default: 4 * 1024 * 1024, description: 'Uncompressed bytes per zTOC span.' },
  { flag: 'min-layer-size', type: 'bytes', default: 10 * 1024 * 1024, description: 'Layers smaller than this (compressed) get no zTOC and are fetched whole by the snapshotter.' },
  { flag: 'build-tool-id', type: 'string', default: 'AWS SOCI CLI v0.2', description: 'build_tool_identifier written into zTOCs and SOCI indexes (this value makes zTOCs byte-identical to the soci CLI).' },
  { flag: 'index-mode', type: 'enum', values: ['wait', 'background', 'off'], default: 'wait', description: 'wait: hold the first request up to --index-wait; background: answer with the original at once and index behind it; off: never index (a plain pull-through proxy; TAG-soci answers the original too).' },
  { flag: 'index-wait', type: 'seconds', default: 120, description: 'How long a first request waits for indexing in wait mode before it gets the original image.' },
  { flag: 'retry-failed-after', type: 'seconds', default: 60, description: 'After an image failed to index (upstream error, corrupt layer), answer its original this long before indexing is tried again.' },
  { flag: 'max-layer-uncompressed', type: 'bytes', default: 64 * 1024 ** 3, description: 'Gzip-bomb guard: a layer that inflates past this gets no zTOC (it is still served, unindexed).' },
  { flag: 'plain-tags', type: 'enum', values: ['soci', 'original'], default: 'soci', description: 'What a plain tag answers: the SOCI-enabled image (transparent) or the original.' },
  { flag: 'soci-tag-suffix', type: 'string', default: '-soci', description: 'TAG<suffix> always answers the SOCI-enabled image of TAG.' },
  { flag: 'referrers', type: 'bool', default: true, description: 'Answer /referrers/<digest> with SOCI index v1 descriptors for original manifests.' },
  { flag: 'tag-cache', type: 'seconds', default: 0, description: 'Reuse a tag→digest resolution this long (for rate-limited upstreams); 0 asks upstream every time.' },
  { flag: 'workers', type: 'int', default: 0, description: 'Indexer worker threads (0: one per core).' },
  { flag: 'tls-cert', type: 'string', description: 'PEM certificate to serve HTTPS directly (with --tls-key).' },
  { flag: 'tls-key', type: 'string', description: 'PEM private key for --tls-cert.' },
  { flag: 'log-level', type: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'Log level of the JSON logs (pino).' },
  { flag: 'shutdown-timeout', type: 'seconds', default: 30, description: 'On SIGTERM: how long to finish in-flight responses and index jobs before exiting.' },
];

export function envName(flag: string): string {
  return `SOCI_PROXY_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export function configKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());
}


export type OptionValue = string | number | boolean | string[] | undefined;

/** Parses one raw value for a setting; throws an Error naming the setting on a bad value. */
export function parseOptionValue(spec: OptionSpec, raw: unknown, source: string): OptionValue {
  const bad = (why: string): Error => new Error(`invalid ${source} for ${spec.flag}: ${JSON.stringify(raw)} (${why})`);
  if (raw === undefined || raw === null) return undefined;
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') throw bad('expected a string');
      return raw;
    case 'list':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw as string[];
      if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter(Boolean);
      throw bad('expected a list of strings');
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(0|false|no|off)$/i.test(raw)) return false;
      throw bad('expected true or false');
    case 'enum':
      if (typeof raw !== 'string' || !spec.values?.includes(raw)) throw bad(`expected one of ${spec.values?.join(', ')}`);
      return raw;
    case 'int':
    case 'seconds': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isFinite(n) || n < 0 || (spec.type === 'int' && !Number.isInteger(n))) throw bad(spec.type === 'int' ? 'expected a whole number ≥ 0' : 'expected seconds ≥ 0');
      return n;
    }
    case 'bytes': {
      if (typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0) return raw;
      const n = typeof raw === 'string' ? parseByteSize(raw) : undefined;
      if (n === undefined) throw bad('expected bytes, e.g. 4194304, 4MiB, 10G');
      return n;
    }
  }
}

/** Markdown table of every setting (the README's configuration reference is this output). */
export function optionsMarkdown(): string {
  const rows = SERVE_OPTIONS.map((o) => {
    const def = o.default === undefined ? '' : Array.isArray(o.default) ? (o.default.length ? o.default.join(', ') : '') : String(o.default);
    const values = o.values ? ` (${o.values.join(' \\| ')})` : '';
    return `| \`--${o.flag}\` | \`${envName(o.flag)}\` | \`${configKey(o.flag)}\` | ${o.type}${values} | ${def ? `\`${def}\`` : ''} | ${o.description} |`;
  });
  return ['| flag | environment | config key | type | default | meaning |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n');
}
