/**
 * A tiny Docker token service for tests (the `auth.token` flow of docker-registry): GET /token?service=&scope=
 * with optional Basic credentials answers `{token|access_token, expires_in}` where the token is an RS256 JWT
 * signed with node:crypto, its certificate in the `x5c` header (the registry trusts it via `rootcertbundle`),
 * and `access: [{type:'repository', name, actions}]`. Anonymous callers get pull on every repository when
 * `anonymousPull` is set; known users get pull and push. Every request is recorded for assertions.
 */
import { createSign, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { TestCert } from './certs.js';

export interface TokenServiceOptions {
  cert: TestCert;
  issuer: string;
  service: string;
  users?: Record<string, string>;
  anonymousPull?: boolean;
  /** `exp` = now + this, s (may be negative: docker-registry 2.8 allows 60 s of skew). Default 300. */
  jwtLifetimeS?: number;
  /** `expires_in` told to the client, s. Default = jwtLifetimeS. */
  expiresInS?: number;
  /** Name of the token field. Default 'token'. */
  field?: 'token' | 'access_token';
}

export interface TokenRequestRecord {
  user: string | undefined;
  scopes: string[];
  service: string | null;
  status: number;
}

export interface TokenService {
  realm: string;
  requests: TokenRequestRecord[];
  /** Mints a token directly (for pushing fixtures). */
  mint(user: string | undefined, access: Array<{ name: string; actions: string[] }>): string;
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export async function startTokenService(opts: TokenServiceOptions): Promise<TokenService> {
  const requests: TokenRequestRecord[] = [];
  const lifetime = opts.jwtLifetimeS ?? 300;
  const mint = (user: string | undefined, access: Array<{ name: string; actions: string[] }>) => {
    const now = Math.floor(Date.now() / 1000);
    const head = { typ: 'JWT', alg: 'RS256', x5c: [opts.cert.derBase64] };
    const claims = {
      iss: opts.issuer, sub: user ?? '', aud: opts.service, exp: now + lifetime, nbf: now - 10, iat: now, jti: randomUUID(),
      access: access.map((a) => ({ type: 'repository', name: a.name, actions: a.actions })),
    };
    const input = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(opts.cert.keyPem);
    return `${input}.${b64url(sig)}`;
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    let user: string | undefined;
    let status = 200;
    const auth = req.headers.authorization;
    if (auth) {
      const plain = Buffer.from(auth.replace(/^Basic\s+/i, ''), 'base64').toString();
      const [u, ...rest] = plain.split(':');
      if (!/^Basic\s/i.test(auth) || !u || opts.users?.[u] !== rest.join(':')) status = 401;
      else user = u;
    } else if (!opts.anonymousPull) {
      status = 401;
    }
    requests.push({ user, scopes, service: url.searchParams.get('service'), status });
    if (url.pathname !== '/token') status = 404;
    if (status !== 200) {
      res.writeHead(status, { 'content-type': 'application/json' }).end('{"details":"no"}');
      return;
    }
    const access = scopes.flatMap((s) => {
      const m = /^repository:([^:]+):(.+)$/.exec(s);
      if (!m) return [];
      const wanted = m[2]!.split(',');
      const allowed = user ? wanted.filter((a) => a === 'pull' || a === 'push') : wanted.filter((a) => a === 'pull');
      return [{ name: m[1]!, actions: allowed }];
    });
    const token = mint(user, access);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ [opts.field ?? 'token']: token, expires_in: opts.expiresInS ?? Math.max(1, lifetime) }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    requests,
    mint,
    stop: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
