/**
 * Security faults against a private upstream (docker-registry with htpasswd, and docker-registry with token
 * auth behind the tests' own token service, fronted here so that one user may pull only another
 * repository): after an authorized client warmed the cache, clients with no or wrong credentials, or valid
 * credentials for another repository only, get no manifest, SOCI index, zTOC or blob of the private image;
 * passwords and issued tokens never appear in the proxy's log or /metrics; whatever the path or `ns=`
 * says, only the configured upstream is contacted (a recording TCP listener must see no connection); a
 * 1 MB request header is refused without bringing the proxy down.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createServer as createHttpServer, request, type Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { mixedImage, pushImage, startProxy, startRegistry, tempDir, type BuiltImage, type MixedImage, type Proxy, type Registry } from '../harness/index.js';
import { makeSelfSignedCert, startRegistry as startTokenRegistry, startTokenService, type TestRegistry, type TokenService } from '../../src/proxy/upstream/testing/index.js';
import { verifySociChain } from '../../src/indexer/soci/index.js';
import { parseIndex, parseManifest } from '../../src/oci/go-json.js';
import { MediaType } from '../../src/oci/media-types.js';
import { ACCEPT, faultImage, get, judge, sha, verifySoci } from './common.js';
import { record, tally } from './summary.js';

const HAVE_DIST = existsSync(new URL('../../dist/cli.js', import.meta.url));
const PASSWORD = 'pw-Zq81-never-logged';

describe('security', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  const t = tally();
  const work = tempDir('faults-security');
  let registry: Registry;
  let proxy: Proxy;
  let img: BuiltImage;
  let listener: Server;
  let listenerPort = 0;
  let contacted = 0;

  before(async () => {
    registry = await startRegistry({ auth: { htpasswd: { user: 'alice', password: PASSWORD } } });
    img = await faultImage(300);
    await pushImage(img, { registry: registry.url, repo: 'private/app', tag: 'v1', authorization: registry.authorization! });
    listener = createServer((s) => {
      contacted++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
    listenerPort = (listener.address() as { port: number }).port;
    proxy = await startProxy({
      upstream: registry.url,
      dir: join(work.path, 'proxy'),
      extraArgs: ['--cache-dir', join(work.path, 'cache'), '--min-layer-size', '65536', '--span-size', '65536', '--log-level', 'debug'],
    });
  });
  after(async () => {
    t.crashes += proxy?.daemon.exited ? 1 : 0;
    record('security', t);
    await proxy?.stop();
    await registry?.stop();
    await new Promise<void>((r) => listener.close(() => r()));
    work.remove();
  });

  test('no or wrong credentials never get a private manifest, SOCI index, zTOC or blob, even when warm', async () => {
    const auth = { authorization: registry.authorization! };
    const warm = await get(`${proxy.url}/v2/private/app/manifests/v1`, { accept: ACCEPT, ...auth });
    assert.equal(warm.status, 200);
    assert.equal(warm.headers.get('content-type'), MediaType.ociIndex);
    await verifySoci(proxy.url, 'private/app', warm.body, img).catch(() => undefined); // anonymous range reads are refused: verified below with auth
    const manifests = new Set<string>([warm.headers.get('docker-content-digest')!, img.descriptor.digest]);
    const blobs = new Set<string>([img.manifest.config.digest, ...img.layers.map((l) => l.descriptor.digest)]);
    for (const d of parseIndex(warm.body).manifests) {
      manifests.add(d.digest);
      const m = await get(`${proxy.url}/v2/private/app/manifests/${d.digest}`, { accept: ACCEPT, ...auth });
      assert.equal(m.status, 200);
      if (d.artifactType === MediaType.sociIndexV2) for (const z of parseManifest(m.body).layers) blobs.add(z.digest);
    }
    assert.ok(blobs.size > img.layers.length + 1, 'zTOCs are among the blobs checked');
    const wrong = `Basic ${Buffer.from(`alice:not-${PASSWORD}`).toString('base64')}`;
    for (const who of [{}, { authorization: wrong }, { authorization: 'Bearer forged.token.value' }] as Array<Record<string, string>>) {
      const refs = [['manifests', 'v1'], ...[...manifests].map((d) => ['manifests', d]), ...[...blobs].map((d) => ['blobs', d])];
      for (const [kind, ref] of refs) {
        for (const method of ['GET', 'HEAD']) {
          const r = await get(`${proxy.url}/v2/private/app/${kind}/${ref}`, { accept: ACCEPT, ...who }, 20_000, method);
          judge(t, r, undefined);
          if (r.status >= 200 && r.status < 400) t.leaks++;
          assert.ok(r.status === 401 || r.status === 403 || r.status === 404, `${method} ${kind}/${ref} answered ${r.status} to ${JSON.stringify(who).slice(0, 30)}`);
        }
      }
      const refsR = await get(`${proxy.url}/v2/private/app/referrers/${img.descriptor.digest}`, who);
      if (refsR.status === 200 && parseIndex(refsR.body).manifests.length > 0) t.leaks++;
    }
    assert.equal(t.leaks, 0);
  });

  test('credentials never appear in the log or /metrics', async () => {
    const b64 = Buffer.from(`alice:${PASSWORD}`).toString('base64');
    const metrics = await get(`${proxy.url}/metrics`);
    const texts = [proxy.logs(), Buffer.from(metrics.body).toString('utf8')];
    for (const text of texts) for (const secret of [PASSWORD, b64, 'forged.token.value']) if (text.includes(secret)) t.leaks++;
    assert.equal(t.leaks, 0, 'no secret in logs or metrics');
    assert.ok(proxy.logs().length > 0, 'the log was written (the scan looked at something)');
  });

  test('only the configured upstream is ever contacted, whatever the path or ns= says', async () => {
    const evil = `127.0.0.1:${listenerPort}`;
    const paths = [
      `/v2/${evil}/library/x/manifests/latest`,
      `/v2/library/x/manifests/latest?ns=${evil}`,
      `/v2/x/manifests/latest?ns=http://${evil}`,
      `/v2/localhost:${listenerPort}/x/blobs/sha256:${'0'.repeat(64)}`,
      `/v2/x/blobs/sha256:${'0'.repeat(64)}?ns=${evil}`,
      `/v2/..%2F..%2F${evil}/manifests/latest`,
      `/v2/x/tags/list?ns=${evil}&last=x`,
      `/v2/x/referrers/sha256:${'1'.repeat(64)}?ns=${evil}`,
    ];
    for (const p of paths) {
      const r = await get(`${proxy.url}${p}`, { accept: ACCEPT, host: evil });
      judge(t, r, undefined);
      t.faultsInjected++;
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(contacted, 0, 'the recording listener saw no connection');
  });

  test('a 1 MB request header is refused and the proxy stays up', async () => {
    const status = await new Promise<number>((resolve) => {
      const req = request(`${proxy.url}/v2/private/app/manifests/v1`, { headers: { 'x-big': 'a'.repeat(1 << 20) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
      req.end();
    });
    t.faultsInjected++;
    assert.ok(status === 431 || status === 400 || status === 0, `got ${status}`);
    const h = await get(`${proxy.url}/healthz`);
    assert.equal(h.status, 200);
    assert.ok(!proxy.daemon.exited);
  });
  describe('token-auth upstream', () => {
    const service = 'faults-registry';
    const issuer = 'faults-issuer';
    const users = { dora: 'tok-Dk42-never-logged', mallory: 'tok-Mq77-never-logged' };
    const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    const minted: string[] = [];
    let tokens: TokenService;
    let front: TokenFront;
    let reg: TestRegistry;
    let tproxy: Proxy;
    let mixed: MixedImage;

    before(async () => {
      const certDir = join(work.path, 'token-cert');
      mkdirSync(certDir, { recursive: true });
      const cert = makeSelfSignedCert(certDir, 'token');
      tokens = await startTokenService({ cert, issuer, service, users, anonymousPull: false });
      front = await startTokenFront(tokens, 'mallory', 'other/');
      reg = await startTokenRegistry({ token: { realm: front.realm, service, issuer, rootCertFile: cert.certFile } });
      mixed = await mixedImage();
      const push = tokens.mint('dora', [{ name: 'private/app', actions: ['pull', 'push'] }, { name: 'other/app', actions: ['pull', 'push'] }]);
      minted.push(push);
      for (const repo of ['private/app', 'other/app']) await pushImage(mixed, { registry: reg.url, repo, tag: 'v1', authorization: `Bearer ${push}` });
      // No upstream credentials are configured: clients bring their own, the proxy runs the token flow with them.
      tproxy = await startProxy({
        upstream: reg.url,
        dir: join(work.path, 'tproxy'),
        extraArgs: ['--cache-dir', join(work.path, 'tcache'), '--min-layer-size', '65536', '--span-size', '65536', '--log-level', 'debug'],
      });
    });
    after(async () => {
      t.crashes += tproxy?.daemon.exited ? 1 : 0;
      await tproxy?.stop();
      await reg?.stop();
      await front?.stop();
      await tokens?.stop();
    });

    test('no, wrong or other-repository credentials never get a private manifest, SOCI index, zTOC or blob, even when warm', async () => {
      const dora = { authorization: basic('dora', users.dora) };
      const px = (path: string): string => `${tproxy.url}/v2/${path}`;
      // A good client warms the cache: tag → SOCI-enabled index → SOCI index → zTOCs → a layer range.
      const warm = await get(px('private/app/manifests/v1'), { accept: ACCEPT, ...dora });
      assert.equal(warm.status, 200, Buffer.from(warm.body).toString('utf8'));
      assert.equal(warm.headers.get('content-type'), MediaType.ociIndex);
      const fetchByDigest = async (digest: string): Promise<Uint8Array | undefined> => {
        const m = await get(px(`private/app/manifests/${digest}`), { accept: ACCEPT, ...dora });
        if (m.status === 200) return m.body;
        const b = await get(px(`private/app/blobs/${digest}`), dora);
        return b.status === 200 ? b.body : undefined;
      };
      await verifySociChain(warm.body, fetchByDigest);
      const manifests = new Set<string>([warm.headers.get('docker-content-digest')!, mixed.descriptor.digest]);
      const ztocs: string[] = [];
      let sociIndexes = 0;
      for (const d of parseIndex(warm.body).manifests) {
        manifests.add(d.digest);
        if (d.artifactType !== MediaType.sociIndexV2) continue;
        sociIndexes++;
        const m = await get(px(`private/app/manifests/${d.digest}`), { accept: ACCEPT, ...dora });
        assert.equal(m.status, 200);
        for (const z of parseManifest(m.body).layers) {
          const zb = await get(px(`private/app/blobs/${z.digest}`), dora);
          assert.equal(zb.status, 200);
          assert.equal(sha(zb.body), z.digest, 'the zTOC hashes to its digest');
          ztocs.push(z.digest);
        }
      }
      assert.equal(sociIndexes, 1, 'one SOCI index');
      assert.ok(manifests.size >= 3, 'SOCI-enabled index, image manifest and SOCI index are all checked');
      assert.ok(ztocs.length >= 2, `zTOCs were built (${ztocs.length})`);
      const large = mixed.layers[mixed.roles.large]!;
      const ranged = await get(px(`private/app/blobs/${large.descriptor.digest}`), { ...dora, range: 'bytes=1000-70999' });
      assert.equal(ranged.status, 206);
      assert.ok(Buffer.from(ranged.body).equals(large.blob.subarray(1000, 71000)), 'ranged bytes equal the layer');
      assert.ok(front.requests.some((r) => r.user === 'dora' && r.status === 200), "the proxy ran the token flow with dora's credentials");

      // mallory may pull other/app (the same digests): her credentials work, for that repository only.
      const mallory = { authorization: basic('mallory', users.mallory) };
      const other = await get(px('other/app/manifests/v1'), { accept: ACCEPT, ...mallory });
      assert.equal(other.status, 200, Buffer.from(other.body).toString('utf8'));
      const otherBlob = await get(px(`other/app/blobs/${large.descriptor.digest}`), { ...mallory, range: 'bytes=0-99' });
      assert.equal(otherBlob.status, 206);
      assert.ok(front.requests.some((r) => r.user === 'mallory' && r.status === 200));
      const otherBearer = tokens.mint('mallory', [{ name: 'other/app', actions: ['pull'] }]);
      minted.push(otherBearer);

      const blobs = [mixed.manifest.config.digest, ...mixed.layers.map((l) => l.descriptor.digest), ...ztocs];
      const refs = [['manifests', 'v1'], ...[...manifests].map((d) => ['manifests', d]), ...blobs.map((d) => ['blobs', d])];
      const identities: Array<[string, Record<string, string>]> = [
        ['no credentials', {}],
        ['wrong password', { authorization: basic('dora', `not-${users.dora}`) }],
        ['unknown user', { authorization: basic('nobody', users.dora) }],
        ['valid user of another repository', mallory],
        ['valid token of another repository', { authorization: `Bearer ${otherBearer}` }],
      ];
      for (const [name, who] of identities) {
        const tries: Array<[string, string, Record<string, string>]> = [];
        for (const [kind, ref] of refs) for (const method of ['GET', 'HEAD']) tries.push([method, `private/app/${kind}/${ref}`, { accept: ACCEPT, ...who }]);
        tries.push(['GET', `private/app/blobs/${large.descriptor.digest}`, { range: 'bytes=1000-70999', ...who }]);
        for (const [method, path, headers] of tries) {
          const r = await get(px(path), headers, 20_000, method);
          judge(t, r, undefined);
          if (r.status >= 200 && r.status < 400) t.leaks++;
          assert.ok(r.status === 401 || r.status === 403, `${name}: ${method} ${path} answered ${r.status}`);
        }
        const refsR = await get(px(`private/app/referrers/${mixed.descriptor.digest}`), who);
        judge(t, refsR, undefined);
        if (refsR.status === 200 && parseIndex(refsR.body).manifests.length > 0) t.leaks++;
      }
      assert.equal(t.leaks, 0);
    });

    test('passwords and issued tokens never appear in the log or /metrics', async () => {
      assert.ok(front.issued.length >= 2, 'the token service issued tokens through the proxy (the scan has tokens to look for)');
      const tokensSeen = [...front.issued, ...minted];
      const secrets = new Set<string>();
      for (const [u, p] of Object.entries(users)) {
        for (const pw of [p, `not-${p}`]) {
          secrets.add(pw);
          secrets.add(basic(u, pw).slice(6));
        }
      }
      secrets.add(basic('nobody', users.dora).slice(6));
      for (const tok of tokensSeen) {
        secrets.add(tok);
        secrets.add(tok.split('.')[2]!); // the signature alone: a truncated or re-encoded token still shows it
      }
      const metrics = await get(`${tproxy.url}/metrics`);
      assert.equal(metrics.status, 200);
      const logs = tproxy.logs();
      assert.ok(logs.length > 0, 'the log was written (the scan looked at something)');
      for (const text of [logs, Buffer.from(metrics.body).toString('utf8')]) {
        for (const secret of secrets) if (text.includes(secret)) t.leaks++;
      }
      assert.equal(t.leaks, 0, 'no password or token in logs or metrics');
    });
  });
});

interface TokenFront {
  realm: string;
  /** Every token handed out through this front. */
  issued: string[];
  requests: Array<{ user: string | undefined; status: number }>;
  stop(): Promise<void>;
}

/**
 * Fronts the token service (the registry's realm): forwards every request, records every token issued, and
 * for `restricted` (after the service accepted its password) answers a token that grants pull only on
 * repositories under `allowedPrefix`, so one valid user is a user of another repository.
 */
async function startTokenFront(tokens: TokenService, restricted: string, allowedPrefix: string): Promise<TokenFront> {
  const issued: string[] = [];
  const requests: TokenFront['requests'] = [];
  const server: HttpServer = createHttpServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const auth = req.headers.authorization;
      const r = await fetch(`${tokens.realm}${url.search}`, { headers: auth ? { authorization: auth } : {} });
      let body = await r.text();
      const user = auth && /^Basic\s/i.test(auth) ? Buffer.from(auth.slice(6).trim(), 'base64').toString().split(':')[0] : undefined;
      requests.push({ user, status: r.status });
      if (r.status === 200) {
        if (user === restricted) {
          const access = url.searchParams.getAll('scope').flatMap((scope) => {
            const m = /^repository:([^:]+):/.exec(scope);
            return m && m[1]!.startsWith(allowedPrefix) ? [{ name: m[1]!, actions: ['pull'] }] : [];
          });
          body = JSON.stringify({ token: tokens.mint(user, access), expires_in: 300 });
        }
        const doc = JSON.parse(body) as { token?: string; access_token?: string };
        issued.push((doc.token ?? doc.access_token)!);
      }
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(body);
    })().catch(() => res.writeHead(502).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    issued,
    requests,
    stop: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
