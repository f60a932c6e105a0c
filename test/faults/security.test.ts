/**
 * Security faults against a private upstream (docker-registry with htpasswd): after an authorized client
 * warmed the cache, clients with no or wrong credentials get no manifest, SOCI index, zTOC or blob of the
 * private image; credentials never appear in the proxy's log or /metrics; whatever the path or `ns=`
 * says, only the configured upstream is contacted (a recording TCP listener must see no connection); a
 * 1 MB request header is refused without bringing the proxy down.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { request } from 'node:http';
import { join } from 'node:path';
import { pushImage, startProxy, startRegistry, tempDir, type BuiltImage, type Proxy, type Registry } from '../harness/index.js';
import { parseIndex, parseManifest } from '../../src/oci/go-json.js';
import { MediaType } from '../../src/oci/media-types.js';
import { ACCEPT, faultImage, get, judge, verifySoci } from './common.js';
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
});
