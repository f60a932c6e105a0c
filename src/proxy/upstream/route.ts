/**
 * Routing of a client's repository name to one configured upstream and the repository name there.
 * Order: a containerd mirror request's `ns` (when it names a configured upstream) wins, since the path then
 * holds the upstream's own repository name; else a first path component that is a configured upstream name
 * (`docker.io/library/python`); else the default upstream with the whole name. A name that is not configured
 * never becomes a host: `evil.example/x` with no such upstream is just a repository of the default upstream.
 * Docker Hub naming adds `library/` to single-component repositories.
 */
import { OciError } from '../../oci/errors.js';
import { normalizeUpstream, type Upstream, type UpstreamsConfig } from './config.js';

export interface Route {
  upstream: Upstream;
  /** Repository name on the upstream (`library/python`). */
  repository: string;
}

/** distribution's repository name grammar (path components joined by `/`). */
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const REPO_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);

export function isRepositoryName(name: string): boolean {
  return name.length <= 255 && REPO_RE.test(name);
}

/** A lookup of normalized upstreams by name; build once per config with `compileRoutes`. */
export interface RouteTable {
  byName: ReadonlyMap<string, Upstream>;
  default: Upstream | undefined;
}

const compiled = new WeakMap<UpstreamsConfig, RouteTable>();

export function compileRoutes(config: UpstreamsConfig): RouteTable {
  const hit = compiled.get(config);
  if (hit) return hit;
  const byName = new Map<string, Upstream>();
  for (const cfg of config.upstreams) {
    const up = normalizeUpstream(cfg);
    if (byName.has(up.name)) throw new OciError('NAME_INVALID', `upstream ${up.name} configured twice`);
    byName.set(up.name, up);
  }
  let def: Upstream | undefined;
  if (config.defaultUpstream !== undefined) {
    def = byName.get(config.defaultUpstream.toLowerCase());
    if (!def) throw new OciError('NAME_INVALID', `default upstream ${config.defaultUpstream} is not configured`);
  }
  const table = { byName, default: def };
  compiled.set(config, table);
  return table;
}

/**
 * Routes `name` (as in `/v2/<name>/...`) with an optional `ns` query parameter. Returns undefined when no
 * configured upstream serves the name. Throws NAME_INVALID when the repository part is not a valid name.
 */
export function resolveRoute(config: UpstreamsConfig | RouteTable, name: string, ns?: string): Route | undefined {
  const table = 'byName' in config ? config : compileRoutes(config);
  let upstream: Upstream | undefined;
  let repository = name;
  const nsUp = ns ? table.byName.get(ns.toLowerCase()) : undefined;
  if (nsUp) {
    upstream = nsUp;
  } else {
    const slash = name.indexOf('/');
    const first = slash > 0 ? name.slice(0, slash).toLowerCase() : undefined;
    const prefixed = first !== undefined ? table.byName.get(first) : undefined;
    if (prefixed) {
      upstream = prefixed;
      repository = name.slice(slash + 1);
    } else {
      upstream = table.default;
    }
  }
  if (!upstream) return undefined;
  if (!isRepositoryName(repository)) throw new OciError('NAME_INVALID', `invalid repository name ${JSON.stringify(repository.slice(0, 256))}`);
  if (upstream.dockerHub && !repository.includes('/')) repository = `library/${repository}`;
  return { upstream, repository };
}

