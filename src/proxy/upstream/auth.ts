/**
 * Auth wrapper: answers an upstream's 401 challenge and retries the request once with credentials.
 * `Bearer` challenges run the Docker token flow (GET realm?service=&scope=, token from `token` or
 * `access_token`, lifetime `expires_in`, default 60 s); `Basic` challenges get the Basic credentials
 * directly. Credentials are, in order: the client's own `Authorization` (Basic → used for the token request;
 * Bearer → forwarded untouched, no flow), then the upstream's configured username/password, else anonymous.
 * Authorizations are cached per (upstream, scope, credential), where the credential is a salted hash of the
 * client's header, so tokens are never shared between different client credentials; a 401 on a cached
 * authorization drops it and runs the flow once more. Concurrent flows for one key share a token request.
 * Tokens and credentials never appear in errors or logs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { OciError } from '../../oci/errors.js';
import { parseChallenges, type Challenge } from './challenge.js';
import type { Upstream } from './config.js';
import { unauthorized } from './error-map.js';
import { readBounded } from './read-body.js';
import { discard, type Send, type UpstreamRequest } from './transport.js';

type Credential =
  | { kind: 'anonymous'; key: string }
  | { kind: 'basic'; key: string; username: string; password: string }
  | { kind: 'bearer'; header: string };

interface Authorization {
  value: string;
  expiresAt: number;
}

export interface AuthOptions {
  upstream: Upstream;
  /** Sends token requests (no auth wrapper on it). */
  tokenSend: Send;
  /** Shared across upstreams if wanted; keys include the upstream name. */
  cache?: AuthCache;
  now?: () => number;
}

/** Authorization cache plus in-flight token requests. */
export class AuthCache {
  readonly #lru: LRUCache<string, Authorization>;
  readonly inflight = new Map<string, Promise<Authorization | undefined>>();
  constructor(max = 10_000) {
    this.#lru = new LRUCache({ max });
  }
  get(key: string, now: number): Authorization | undefined {
    const a = this.#lru.get(key);
    if (a && a.expiresAt <= now) {
      this.#lru.delete(key);
      return undefined;
    }
    return a;
  }
  set(key: string, a: Authorization): void {
    this.#lru.set(key, a);
  }
  delete(key: string): void {
    this.#lru.delete(key);
  }
  get size(): number {
    return this.#lru.size;
  }
}

const SALT = randomBytes(16);
const BASIC_TTL_MS = 3_600_000;
const DEFAULT_TOKEN_TTL_S = 60;

function credentialFor(clientAuthorization: string | undefined, up: Upstream): Credential {
  if (clientAuthorization) {
    const m = /^(basic|bearer)\s+(\S+)\s*$/i.exec(clientAuthorization);
    const key = createHash('sha256').update(SALT).update(clientAuthorization).digest('hex');
    if (m?.[1]?.toLowerCase() === 'bearer') return { kind: 'bearer', header: clientAuthorization };
    if (m?.[2]) {
      const plain = Buffer.from(m[2], 'base64').toString('utf8');
      const colon = plain.indexOf(':');
      if (colon >= 0) return { kind: 'basic', key: `client:${key}`, username: plain.slice(0, colon), password: plain.slice(colon + 1) };
    }
    throw new OciError('UNAUTHORIZED', 'malformed Authorization header', { headers: unauthorized().headers });
  }
  if (up.username !== undefined) return { kind: 'basic', key: 'config', username: up.username, password: up.password ?? '' };
  return { kind: 'anonymous', key: 'anonymous' };
}

function basicHeader(c: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

export function withAuth(send: Send, opts: AuthOptions): Send {
  const up = opts.upstream;
  const cache = opts.cache ?? new AuthCache();
  const now = opts.now ?? Date.now;
  const withHeader = (req: UpstreamRequest, value: string | undefined): UpstreamRequest => {
    const headers = { ...req.headers };
    if (value) headers.authorization = value;
    else delete headers.authorization;
    return { ...req, headers };
  };

  async function fetchToken(ch: Challenge, cred: Credential, scope: string | undefined): Promise<Authorization> {
    let realm: URL;
    try {
      realm = new URL(ch.params.realm ?? '');
    } catch {
      throw new OciError('UNAVAILABLE', `upstream ${up.name} sent a Bearer challenge without a valid realm`);
    }
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && up.plainHttp)) {
      throw new OciError('UNAVAILABLE', `upstream ${up.name}: token realm must be https`);
    }
    if (ch.params.service) realm.searchParams.set('service', ch.params.service);
    const scopes = (ch.params.scope ?? scope ?? '').split(' ').filter(Boolean);
    for (const s of scopes) realm.searchParams.append('scope', s);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (cred.kind === 'basic') headers.authorization = basicHeader(cred);
    const res = await opts.tokenSend({ method: 'GET', url: realm, headers });
    if (res.status === 401) { discard(res); throw unauthorized(`token service of ${up.name} rejected the credentials`); }
    if (res.status === 403) { discard(res); throw new OciError('DENIED', `token service of ${up.name} denied access`); }
    if (res.status !== 200) { discard(res); throw new OciError('UNAVAILABLE', `token service of ${up.name} answered ${res.status}`); }
    const body = await readBounded(res.body, 1024 * 1024, 'token response');
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      json = JSON.parse(Buffer.from(body).toString('utf8'));
    } catch {
      throw new OciError('UNAVAILABLE', `token service of ${up.name} sent invalid JSON`);
    }
    const token = typeof json.token === 'string' && json.token ? json.token : json.access_token;
    if (typeof token !== 'string' || !token) throw new OciError('UNAVAILABLE', `token service of ${up.name} sent no token`);
    const ttl = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : DEFAULT_TOKEN_TTL_S;
    // Renew a little early so a token never expires between our check and the upstream's.
    return { value: `Bearer ${token}`, expiresAt: now() + ttl * 1000 * 0.9 };
  }

  async function authorize(res401: { headers: Record<string, string | string[] | undefined> }, cred: Credential, key: string, req: UpstreamRequest): Promise<Authorization | undefined> {
    const challenges = parseChallenges(res401.headers['www-authenticate']);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) {
      let p = cache.inflight.get(key);
      if (!p) {
        p = fetchToken(bearer, cred, req.scope)
          .then((a) => { cache.set(key, a); return a; })
          .finally(() => cache.inflight.delete(key));
        cache.inflight.set(key, p);
      }
      return p;
    }
    if (challenges.some((c) => c.scheme === 'basic') && cred.kind === 'basic') {
      const a = { value: basicHeader(cred), expiresAt: now() + BASIC_TTL_MS };
      cache.set(key, a);
      return a;
    }
    return undefined;
  }

  return async (req) => {
    const cred = credentialFor(req.headers.authorization, up);
    if (cred.kind === 'bearer') return send(req); // the client's own token, forwarded as is
    const key = `${up.name}|${req.scope ?? ''}|${cred.key}`;
    const cached = cache.get(key, now());
    const res = await send(withHeader(req, cached?.value));
    if (res.status !== 401) return res;
    // Another request may have refreshed the entry while ours was in flight: use that before asking again.
    let authz = cache.get(key, now());
    if (!authz || authz === cached) {
      if (cached) cache.delete(key);
      authz = await authorize(res, cred, key, req).catch((err: unknown) => { discard(res); throw err; });
    }
    if (!authz) return res;
    discard(res);
    const again = await send(withHeader(req, authz.value));
    if (again.status === 401 && cache.get(key, now()) === authz) cache.delete(key);
    return again;
  };
}
