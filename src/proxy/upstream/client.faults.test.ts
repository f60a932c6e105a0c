/** UpstreamClient against small fake upstreams: error mapping, retries, timeouts, redirects, digest and size checks. */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OciError } from '../../oci/errors.js';
import { buffer } from 'node:stream/consumers';
import type { ServerResponse } from 'node:http';
import { sha256 } from '../../oci/digest.js';
import { MediaType } from '../../oci/media-types.js';
import { normalizeUpstream, type UpstreamConfig } from './config.js';
import { UpstreamClient } from './client.js';
import { freePort, startFakeServer, type FakeServer } from './testing/index.js';

async function caught(p: Promise<unknown>): Promise<OciError> {
  try { await p; } catch (e) { return e as OciError; }
  throw new Error('expected a rejection');
}
const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;
const servers: FakeServer[] = [];
const clients: UpstreamClient[] = [];
after(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.stop();
});

async function fake(handler: Parameters<typeof startFakeServer>[0]): Promise<FakeServer> {
  const s = await startFakeServer(handler);
  servers.push(s);
  return s;
}
function clientFor(s: { host: string; url: string }, extra: Partial<UpstreamConfig> = {}): UpstreamClient {
  const c = new UpstreamClient(normalizeUpstream({ name: s.host, url: s.url, retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 50 }, ...extra }));
  clients.push(c);
  return c;
}
const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
const D = sha256('blob');

describe('error mapping', () => {
  test('429 → TOOMANYREQUESTS with Retry-After, not retried', async () => {
    const s = await fake((_q, res) => json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, { 'retry-after': '17' }));
    const err = await caught(clientFor(s).getManifest('a/b', 'v1'));
    assert.equal(err.code, 'TOOMANYREQUESTS');
    assert.equal(err.status, 429);
    assert.equal(err.headers['retry-after'], '17');
    assert.equal(s.requests.length, 1);
  });
  test('403 → DENIED, 404 codes from the body, 416 → RANGE_INVALID, 500 → UNAVAILABLE; none retried', async () => {
    const s = await fake((q, res) => {
      if (q.url!.includes('/denied/')) return json(res, 403, { errors: [{ code: 'DENIED', message: 'no' }] });
      if (q.url!.includes('/nameless/')) return json(res, 404, { errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }] });
      if (q.url!.includes('/plain404/')) return res.writeHead(404).end('404 page not found');
      if (q.url!.includes('/range/')) return res.writeHead(416).end();
      res.writeHead(500).end('boom');
    });
    const c = clientFor(s);
    await assert.rejects(c.getManifest('denied/x', 'v1'), code('DENIED'));
    await assert.rejects(c.getManifest('nameless/x', 'v1'), code('NAME_UNKNOWN'));
    await assert.rejects(c.getManifest('plain404/x', 'v1'), code('MANIFEST_UNKNOWN'));
    await assert.rejects(c.getBlob('plain404/x', D), code('BLOB_UNKNOWN'));
    await assert.rejects(c.listTags('plain404/x'), code('NAME_UNKNOWN'));
    await assert.rejects(c.getBlob('range/x', D, { range: 'bytes=99999-' }), code('RANGE_INVALID'));
    const e500 = await caught(c.getManifest('err/x', 'v1'));
    assert.equal(e500.code, 'UNAVAILABLE');
    assert.equal(e500.status, 502);
    assert.equal(s.requests.length, 7);
  });
});

describe('retries and timeouts', () => {
  test('503/502/504 are retried with backoff and then succeed', async () => {
    const body = Buffer.from('{"schemaVersion":2}');
    const s = await fake((_q, res, n) => {
      if (n === 1) return res.writeHead(503, { 'retry-after': '0' }).end();
      if (n === 2) return res.writeHead(504).end();
      res.writeHead(200, { 'content-type': MediaType.ociIndex, 'content-length': String(body.length) }).end(body);
    });
    const m = await clientFor(s).getManifest('a/b', 'v1');
    assert.equal(m.digest, sha256(body));
    assert.equal(s.requests.length, 3);
  });
  test('retries are bounded: persistent 502 → UNAVAILABLE after `attempts` tries', async () => {
    const s = await fake((_q, res) => res.writeHead(502).end());
    await assert.rejects(clientFor(s).headBlob('a/b', D), code('UNAVAILABLE'));
    assert.equal(s.requests.length, 3);
  });
  test('connection refused → UNAVAILABLE', async () => {
    const port = await freePort();
    await assert.rejects(clientFor({ host: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` }).ping().then((p) => { if (!p.reachable) throw Object.assign(new Error(), { code: 'UNAVAILABLE' }); }), code('UNAVAILABLE'));
    await assert.rejects(clientFor({ host: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` }).getManifest('a/b', 'v1'), code('UNAVAILABLE'));
  });
  test('a stalled upstream (no headers) fails within the headers timeout, each try', async () => {
    const s = await fake(() => { /* never answers */ });
    const t0 = Date.now();
    await assert.rejects(clientFor(s, { timeouts: { headersMs: 200 }, retry: { attempts: 2, baseDelayMs: 5 } }).getManifest('a/b', 'v1'), code('UNAVAILABLE'));
    const took = Date.now() - t0;
    assert.ok(took >= 400 && took < 3000, `took ${took} ms`);
    assert.equal(s.requests.length, 2);
  });
  test('a body that stalls mid-stream errors the blob stream after the body timeout', async () => {
    const s = await fake((_q, res) => { res.writeHead(200, { 'content-length': '1000' }); res.write(Buffer.alloc(10)); });
    const b = await clientFor(s, { timeouts: { bodyMs: 200 } }).getBlob('a/b', D);
    await assert.rejects(buffer(b.body), (e: unknown) => (e as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT');
  });
});

describe('content checks', () => {
  test('a manifest fetched by digest must match it', async () => {
    const good = Buffer.from('{"schemaVersion":2,"manifests":[]}');
    const s = await fake((_q, res) => res.writeHead(200, { 'content-type': MediaType.ociIndex }).end(Buffer.from('{"schemaVersion":2,"manifests":[ ]}')));
    const err = await caught(clientFor(s).getManifest('a/b', sha256(good)));
    assert.equal(err.code, 'DIGEST_INVALID');
    assert.equal(err.status, 502);
  });
  test('a Docker-Content-Digest that disagrees with the body is refused', async () => {
    const s = await fake((_q, res) => res.writeHead(200, { 'content-type': MediaType.ociIndex, 'docker-content-digest': sha256('other') }).end('{}'));
    await assert.rejects(clientFor(s).getManifest('a/b', 'v1'), code('DIGEST_INVALID'));
  });
  test('manifests over 4 MiB are refused, by Content-Length or by streamed size', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    const s = await fake((q, res) => {
      if (q.url!.includes('chunked')) { res.writeHead(200, { 'content-type': MediaType.ociIndex }); res.write(big.subarray(0, 3_000_000)); res.end(big.subarray(3_000_000)); return; }
      res.writeHead(200, { 'content-type': MediaType.ociIndex, 'content-length': String(big.length) }).end(big);
    });
    await assert.rejects(clientFor(s).getManifest('a/b', 'v1'), (e: unknown) => code('UNAVAILABLE')(e) && /exceeds/.test((e as Error).message));
    await assert.rejects(clientFor(s).getManifest('chunked/b', 'v1'), (e: unknown) => code('UNAVAILABLE')(e) && /exceeds/.test((e as Error).message));
    const exact = Buffer.alloc(4 * 1024 * 1024, 0x20);
    const s2 = await fake((_q, res) => res.writeHead(200, { 'content-type': MediaType.ociIndex }).end(exact));
    assert.equal((await clientFor(s2).getManifest('a/b', 'v1')).size, exact.length);
  });
  test('the Accept header always lists the OCI and Docker types after the client\'s own', async () => {
    const s = await fake((_q, res) => res.writeHead(200, { 'content-type': MediaType.dockerManifest }).end('{}'));
    await clientFor(s).getManifest('a/b', 'v1', { accept: ['application/x-custom', `${MediaType.dockerManifest}; q=0.5`] });
    assert.equal(s.requests[0]?.headers.accept, `application/x-custom, ${MediaType.dockerManifest}; q=0.5, ${MediaType.ociManifest}, ${MediaType.ociIndex}, ${MediaType.dockerManifestList}`);
  });
  test('a 200 reply to a ranged request is reported', async () => {
    const s = await fake((_q, res) => res.writeHead(200, { 'content-length': '4' }).end('blob'));
    const b = await clientFor(s).getBlob('a/b', sha256('blob'), { range: 'bytes=1-2' });
    assert.equal(b.status, 200);
    assert.equal(b.rangeIgnored, true);
    assert.equal(s.requests[0]?.headers.range, 'bytes=1-2');
    assert.equal((await buffer(b.body)).toString(), 'blob');
  });
  test('tag list pagination follows the Link header', async () => {
    const s = await fake((_q, res) => json(res, 200, { name: 'a/b', tags: ['x', 'y'] }, { link: '</v2/a/b/tags/list?n=2&last=y>; rel="next"' }));
    const t = await clientFor(s).listTags('a/b', { n: 2, last: 'w' });
    assert.deepEqual(t, { name: 'a/b', tags: ['x', 'y'], next: { n: 2, last: 'y' } });
    assert.equal(s.requests[0]?.url, '/v2/a/b/tags/list?n=2&last=w');
  });
});

describe('redirects and the token flow', () => {
  test('blob redirects to another host are followed without the Authorization header', async () => {
    const storage = await fake((q, res) => res.writeHead(q.headers.range ? 206 : 200, q.headers.range ? { 'content-range': 'bytes 0-3/4' } : {}).end('blob'));
    const auth = await fake((q, res) => json(res, 200, { access_token: `tok-${q.headers.authorization ? 'user' : 'anon'}`, expires_in: 120 }));
    const reg = await fake((q, res) => {
      if (q.headers.authorization !== 'Bearer tok-user') {
        return json(res, 401, { errors: [{ code: 'UNAUTHORIZED' }] }, { 'www-authenticate': `Bearer realm="${auth.url}/token",service="fake",scope="repository:a/b:pull"` });
      }
      res.writeHead(307, { location: `${storage.url}/data/blob?sig=secret` }).end();
    });
    const c = clientFor(reg, { username: 'u', password: 'p' });
    const b = await c.getBlob('a/b', sha256('blob'), { range: 'bytes=0-3' });
    assert.equal(b.status, 206);
    assert.equal((await buffer(b.body)).toString(), 'blob');
    assert.equal(auth.requests.length, 1);
    assert.equal(auth.requests[0]?.url, '/token?service=fake&scope=repository%3Aa%2Fb%3Apull');
    assert.equal(auth.requests[0]?.headers.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
    assert.equal(storage.requests.length, 1);
    assert.equal(storage.requests[0]?.headers.authorization, undefined);
    assert.equal(storage.requests[0]?.headers.range, 'bytes=0-3');
    // the cached token goes straight to the registry next time
    await buffer((await c.getBlob('a/b', sha256('blob'))).body);
    assert.equal(auth.requests.length, 1);
    assert.deepEqual(reg.requests.map((r) => r.headers.authorization), [undefined, 'Bearer tok-user', 'Bearer tok-user']);
  });
  test('redirect loops are bounded; redirects can be turned off', async () => {
    const s = await fake((q, res) => res.writeHead(302, { location: `${q.url}x` }).end());
    await assert.rejects(clientFor(s).getBlob('a/b', D), (e: unknown) => code('UNAVAILABLE')(e) && /redirected more than 5/.test((e as Error).message));
    assert.equal(s.requests.length, 6);
    const b = await clientFor(s, { followRedirects: false }).getBlob('a/b', D);
    assert.equal(b.status, 302);
    assert.match(b.headers.location ?? '', /x$/);
    b.body.resume();
  });
  test('an https upstream may not redirect to http, nor hand out an http token realm', async () => {
    const { Readable } = await import('node:stream');
    const { withRedirects } = await import('./redirect.js');
    const { withAuth } = await import('./auth.js');
    const target = await fake((_q, res) => res.end('should not be reached'));
    const redirecting = withRedirects(async (req) => ({ status: 302, headers: { location: `${target.url}/x` }, body: Readable.from([]), url: req.url }), { maxRedirects: 5, allowPlainHttp: false });
    await assert.rejects(redirecting({ method: 'GET', url: new URL('https://registry.example/v2/'), headers: {} }), (e: unknown) => code('UNAVAILABLE')(e) && /disallowed scheme/.test((e as Error).message));
    const up = normalizeUpstream({ name: 'registry.example', username: 'u', password: 'p' });
    const challenging = withAuth(async (req) => ({ status: 401, headers: { 'www-authenticate': `Bearer realm="${target.url}/token"` }, body: Readable.from([]), url: req.url }), {
      upstream: up,
      tokenSend: async () => { throw new Error('token request must not be sent'); },
    });
    await assert.rejects(challenging({ method: 'GET', url: new URL('https://registry.example/v2/'), headers: {} }), (e: unknown) => code('UNAVAILABLE')(e) && /realm must be https/.test((e as Error).message));
    assert.equal(target.connections, 0);
  });
});
