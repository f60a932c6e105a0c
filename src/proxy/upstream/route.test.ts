/** Unit tests: routing (prefix, ns, default, Docker Hub naming, no-SSRF), config defaults, challenge parsing, redaction, Retry-After. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRoute, compileRoutes } from './route.js';
import { normalizeUpstream, type UpstreamsConfig } from './config.js';
import { parseChallenges } from './challenge.js';
import { redactHeaders, redactUrl } from './transport.js';
import { retryAfterMs } from './retry.js';

const config: UpstreamsConfig = {
  upstreams: [
    { name: 'docker.io' },
    { name: 'ghcr.io' },
    { name: '127.0.0.1:5000', url: 'http://127.0.0.1:5000' },
  ],
  defaultUpstream: '127.0.0.1:5000',
};

describe('resolveRoute', () => {
  test('a configured first component selects the upstream', () => {
    const r = resolveRoute(config, 'docker.io/library/python');
    assert.equal(r?.upstream.name, 'docker.io');
    assert.equal(r?.upstream.origin, 'https://registry-1.docker.io');
    assert.equal(r?.repository, 'library/python');
    assert.equal(resolveRoute(config, 'ghcr.io/owner/img')?.repository, 'owner/img');
    assert.equal(resolveRoute(config, 'ghcr.io/owner/img')?.upstream.origin, 'https://ghcr.io');
    assert.equal(resolveRoute(config, '127.0.0.1:5000/a/b')?.repository, 'a/b');
  });
  test('docker.io single-component names get library/', () => {
    assert.equal(resolveRoute(config, 'docker.io/python')?.repository, 'library/python');
    assert.equal(resolveRoute(config, 'python', 'docker.io')?.repository, 'library/python');
    // not for other upstreams
    assert.equal(resolveRoute(config, 'python')?.repository, 'python');
    assert.equal(resolveRoute(config, 'ghcr.io/python')?.repository, 'python');
  });
  test('ns of a configured upstream is honoured, and wins over a prefix', () => {
    const r = resolveRoute(config, 'library/python', 'docker.io');
    assert.equal(r?.upstream.name, 'docker.io');
    assert.equal(r?.repository, 'library/python');
    const r2 = resolveRoute(config, 'ghcr.io/x', 'docker.io');
    assert.equal(r2?.upstream.name, 'docker.io');
  });
  test('unconfigured hosts never become upstreams', () => {
    const a = resolveRoute(config, 'evil.example.com/x/y');
    assert.equal(a?.upstream.name, '127.0.0.1:5000');
    assert.equal(a?.repository, 'evil.example.com/x/y');
    const b = resolveRoute(config, 'x/y', 'evil.example.com');
    assert.equal(b?.upstream.name, '127.0.0.1:5000');
    assert.equal(b?.repository, 'x/y');
    // a name with a port is not a valid repository name: refused, not routed anywhere
    assert.throws(() => resolveRoute(config, '169.254.169.254:80/latest'), (e: { code?: string }) => e.code === 'NAME_INVALID');
    const noDefault: UpstreamsConfig = { upstreams: [{ name: 'ghcr.io' }] };
    assert.equal(resolveRoute(noDefault, 'evil.example.com/x'), undefined);
    assert.equal(resolveRoute(noDefault, 'x', 'evil.example.com'), undefined);
  });
  test('invalid names and configs are refused', () => {
    for (const bad of ['UPPER/x', 'a//b', 'a/../b', '../x', 'a/b/', '-a']) {
      assert.throws(() => resolveRoute(config, bad), (e: { code?: string }) => e.code === 'NAME_INVALID', bad);
    }
    assert.throws(() => compileRoutes({ upstreams: [{ name: 'a.io' }], defaultUpstream: 'b.io' }));
    assert.throws(() => compileRoutes({ upstreams: [{ name: 'a.io' }, { name: 'A.io' }] }));
    assert.throws(() => normalizeUpstream({ name: 'a.io', url: 'ftp://a.io' }));
    assert.throws(() => normalizeUpstream({ name: 'a.io', url: 'https://u:p@a.io' }));
    assert.throws(() => normalizeUpstream({ name: 'http://a.io' }));
  });
  test('defaults are filled', () => {
    const u = normalizeUpstream({ name: 'Quay.io', timeouts: { headersMs: 5 } });
    assert.equal(u.name, 'quay.io');
    assert.equal(u.origin, 'https://quay.io');
    assert.equal(u.plainHttp, false);
    assert.deepEqual(u.timeouts, { connectMs: 10_000, headersMs: 5, bodyMs: 60_000 });
    assert.equal(u.maxManifestBytes, 4 * 1024 * 1024);
    assert.equal(normalizeUpstream({ name: 'docker.io', url: 'https://docker.io' }).origin, 'https://registry-1.docker.io');
    assert.equal(normalizeUpstream({ name: 'docker.io', url: 'http://127.0.0.1:9' }).origin, 'http://127.0.0.1:9');
  });
});

describe('helpers', () => {
  test('parseChallenges', () => {
    const [c] = parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull"');
    assert.deepEqual(c, { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/python:pull' } });
    const two = parseChallenges('Basic realm="a, b", Bearer realm="r",scope="x y"');
    assert.deepEqual(two, [{ scheme: 'basic', params: { realm: 'a, b' } }, { scheme: 'bearer', params: { realm: 'r', scope: 'x y' } }]);
    assert.deepEqual(parseChallenges(['Basic realm=x', 'Bearer realm="q\\"z"']), [{ scheme: 'basic', params: { realm: 'x' } }, { scheme: 'bearer', params: { realm: 'q"z' } }]);
    assert.deepEqual(parseChallenges(undefined), []);
  });
  test('redactHeaders hides credentials and tokens', () => {
    const out = redactHeaders({ Authorization: 'Bearer abc.def', 'proxy-authorization': 'Basic dTpw', cookie: 'a=b', accept: 'x' });
    assert.deepEqual(out, { Authorization: 'Bearer [redacted]', 'proxy-authorization': 'Basic [redacted]', cookie: '[redacted]', accept: 'x' });
    assert.ok(!JSON.stringify(out).includes('abc.def'));
    assert.equal(redactUrl(new URL('https://s3.example/b/k?X-Amz-Signature=zz')), 'https://s3.example/b/k?[redacted]');
  });
  test('retryAfterMs', () => {
    assert.equal(retryAfterMs('3'), 3000);
    assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6000);
    assert.equal(retryAfterMs('soon'), undefined);
    assert.equal(retryAfterMs(undefined), undefined);
  });
});
