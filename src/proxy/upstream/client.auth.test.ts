/** UpstreamClient auth against real docker-registry 2.8: htpasswd Basic auth and token auth with a test token service. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OciError } from '../../oci/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { MediaType } from '../../oci/media-types.js';
import { normalizeUpstream } from './config.js';
import { UpstreamClient } from './client.js';
import { AuthCache } from './auth.js';
import { PROXY_CHALLENGE } from './error-map.js';
import {
  htpasswdLine, makeSelfSignedCert, pushTestImage, startRegistry, startTokenService,
  type PushedImage, type TestRegistry, type TokenService,
} from './testing/index.js';

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
async function caught(p: Promise<unknown>): Promise<OciError> {
  try { await p; } catch (e) { return e as OciError; }
  throw new Error('expected a rejection');
}
const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;

describe('htpasswd basic-auth registry', () => {
  let reg: TestRegistry;
  let img: PushedImage;
  before(async () => {
    reg = await startRegistry({ htpasswd: [htpasswdLine('alice', 's3cret'), htpasswdLine('bob', 'pw2')] });
    img = await pushTestImage(reg, 'priv/img', basic('alice', 's3cret'), 4096);
  });
  after(async () => { await reg?.stop(); });

  test('configured credentials answer the Basic challenge', async () => {
    const c = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url, username: 'alice', password: 's3cret' }));
    const m = await c.getManifest('priv/img', 'oci');
    assert.deepEqual(Buffer.from(m.bytes!), Buffer.from(img.ociManifest));
    assert.ok((await buffer((await c.getBlob('priv/img', img.layerDigest)).body)).equals(img.layer));
    await c.close();
  });
  test("the client's Basic credentials are used; none → UNAUTHORIZED with the proxy's challenge", async () => {
    const c = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url }));
    const err = await caught(c.getManifest('priv/img', 'oci'));
    assert.equal(err.code, 'UNAUTHORIZED');
    assert.equal(err.status, 401);
    assert.equal(err.headers['www-authenticate'], PROXY_CHALLENGE);
    assert.match((err.detail as { upstreamChallenge?: string }).upstreamChallenge ?? '', /^Basic realm="test-realm"/);
    await assert.rejects(c.getManifest('priv/img', 'oci', { clientAuth: basic('bob', 'wrong') }), code('UNAUTHORIZED'));
    const m = await c.getManifest('priv/img', 'oci', { clientAuth: basic('bob', 'pw2') });
    assert.equal(m.digest, img.ociDigest);
    await assert.rejects(c.getManifest('priv/img', 'oci', { clientAuth: 'Basic !!notbase64' }), code('UNAUTHORIZED'));
    await c.close();
  });
});

describe('token-auth registry', () => {
  let dir: string;
  let tokens: TokenService;
  let reg: TestRegistry;
  let img: PushedImage;
  const service = 'test-registry';
  const issuer = 'test-issuer';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upstream-token-'));
    const cert = makeSelfSignedCert(dir, 'token');
    // docker-registry 2.8 allows 60 s of clock skew on `exp`, so an exp 57 s in the past leaves a JWT valid
    // for 3 s while the client is told 300 s: a cached token goes stale upstream and must be refreshed.
    tokens = await startTokenService({ cert, issuer, service, users: { carol: 'pw' }, anonymousPull: true, jwtLifetimeS: -57, expiresInS: 300 });
    reg = await startRegistry({ token: { realm: tokens.realm, service, issuer, rootCertFile: cert.certFile } });
    const push = `Bearer ${tokens.mint('carol', [{ name: 'pub/img', actions: ['pull', 'push'] }])}`;
    img = await pushTestImage(reg, 'pub/img', push, 8192);
    tokens.requests.length = 0;
  });
  after(async () => { await reg?.stop(); await tokens?.stop(); rmSync(dir, { recursive: true, force: true }); });

  test('anonymous token flow, then the cached token is reused', async () => {
    const c = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url }));
    const m = await c.getManifest('pub/img', 'oci');
    assert.equal(m.mediaType, MediaType.ociManifest);
    assert.deepEqual(Buffer.from(m.bytes!), Buffer.from(img.ociManifest));
    const b = await c.getBlob('pub/img', img.layerDigest, { range: 'bytes=10-19' });
    assert.equal(b.status, 206);
    assert.ok((await buffer(b.body)).equals(img.layer.subarray(10, 20)));
    await c.headBlob('pub/img', img.configDigest);
    assert.equal(tokens.requests.length, 1);
    assert.deepEqual(tokens.requests[0], { user: undefined, scopes: ['repository:pub/img:pull'], service, status: 200 });
    await c.close();
  });

  test('tokens are never shared across client credentials; concurrent flows share one token request', async () => {
    tokens.requests.length = 0;
    const cache = new AuthCache();
    const c = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url }), { authCache: cache });
    await Promise.all([1, 2, 3, 4].map(() => c.getManifest('pub/img', img.ociDigest)));
    assert.equal(tokens.requests.length, 1);
    await c.getManifest('pub/img', 'oci', { clientAuth: basic('carol', 'pw') });
    assert.equal(tokens.requests.length, 2);
    assert.equal(tokens.requests[1]?.user, 'carol');
    await c.getManifest('pub/img', 'docker', { clientAuth: basic('carol', 'pw') });
    assert.equal(tokens.requests.length, 2); // carol's token is cached for carol
    await assert.rejects(c.getManifest('pub/img', 'oci', { clientAuth: basic('carol', 'nope') }), code('UNAUTHORIZED'));
    assert.equal(tokens.requests.length, 3);
    assert.equal(tokens.requests[2]?.status, 401);
    assert.equal(cache.size, 2);
    await c.close();
  });

  test('a client Bearer token is forwarded as is', async () => {
    tokens.requests.length = 0;
    const c = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url }));
    const own = `Bearer ${tokens.mint('carol', [{ name: 'pub/img', actions: ['pull'] }])}`;
    assert.equal((await c.getManifest('pub/img', 'oci', { clientAuth: own })).digest, img.ociDigest);
    await assert.rejects(c.getManifest('pub/img', 'oci', { clientAuth: 'Bearer garbage' }), code('UNAUTHORIZED'));
    assert.equal(tokens.requests.length, 0);
    await c.close();
  });

  test('a 401 on a cached token refreshes it once', async () => {
    tokens.requests.length = 0;
    const c = new UpstreamClient(normalizeUpstream({ name: reg.host, url: reg.url }));
    await c.getManifest('pub/img', 'oci');
    assert.equal(tokens.requests.length, 1);
    await new Promise((r) => setTimeout(r, 4200)); // the JWT expires upstream; our cache still holds it
    const m = await c.getManifest('pub/img', 'docker');
    assert.equal(m.digest, img.dockerDigest);
    assert.equal(tokens.requests.length, 2);
    await c.close();
  });
});
