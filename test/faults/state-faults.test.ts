/**
 * State faults: redis-server SIGKILLed and restarted during concurrent pulls through two replicas that
 * share it; a replica SIGKILLed in the middle of indexing (made slow by the fault proxy's trickle) while
 * another waits on the same layer — the waiter takes over once the lock expires (--lock-ttl); a disk
 * cache filled to a small --cache-max-bytes still serves; a corrupt file planted in the disk cache and a
 * corrupt value planted in Redis are detected and never served.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pushImage, redisCommand, startDaemon, startProxy, startRedis, startRegistry, canConnect, tempDir, type BuiltImage, type Daemon, type Proxy, type Redis, type Registry } from '../harness/index.js';
import { MediaType } from '../../src/oci/media-types.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { ACCEPT, auditCacheDir, faultImage, get, judge, sha, sleep, verifySoci } from './common.js';
import { record, tally } from './summary.js';

const HAVE_DIST = existsSync(new URL('../../dist/cli.js', import.meta.url));
const ARGS = ['--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--index-wait', '30', '--retry-failed-after', '1', '--log-level', 'warn'];

describe('state faults', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  const t = tally();
  const work = tempDir('faults-state');
  let registry: Registry;
  let redis: Redis;
  let redis2: Daemon | undefined;
  let faults: FaultProxy;
  const proxies: Proxy[] = [];
  const images: BuiltImage[] = [];

  before(async () => {
    registry = await startRegistry();
    for (let i = 1; i <= 6; i++) {
      const img = await faultImage(100 + i);
      images.push(img);
      await pushImage(img, { registry: registry.url, repo: `state/s${i}`, tag: 'v1' });
    }
    redis = await startRedis();
    faults = await startFaultProxy(registry.host);
  });
  after(async () => {
    t.faultsInjected += faults.injected;
    record('state', t);
    for (const p of proxies) if (!p.daemon.exited) await p.stop();
    await redis2?.stop();
    await redis?.stop();
    await faults?.close();
    await registry?.stop();
    work.remove();
  });

  const start = async (name: string, extra: string[], upstream = registry.url): Promise<Proxy> => {
    const p = await startProxy({ upstream, dir: join(work.path, name), extraArgs: [...ARGS, '--cache-dir', join(work.path, name, 'cache'), ...extra] });
    proxies.push(p);
    return p;
  };
  /** A pull that must give the original manifest or a SOCI index that verifies. */
  const pull = async (p: Proxy, repo: string, img: BuiltImage, mustSoci = false): Promise<void> => {
    const r = await get(`${p.url}/v2/${repo}/manifests/v1`, { accept: ACCEPT });
    assert.equal(r.status, 200, `pull ${repo}: ${r.status} ${r.error ?? Buffer.from(r.body).toString()}`);
    if (r.headers.get('docker-content-digest') === img.descriptor.digest && !mustSoci) {
      assert.ok(judge(t, r, img.manifestBytes));
      return;
    }
    judge(t, r, undefined);
    assert.equal(r.headers.get('content-type'), MediaType.ociIndex);
    assert.equal(r.headers.get('docker-content-digest'), sha(r.body));
    await verifySoci(p.url, repo, r.body, img);
  };

  test('redis-server killed and restarted during concurrent pulls through two replicas', async () => {
    const a = await start('ra', ['--redis', redis.url]);
    const b = await start('rb', ['--redis', redis.url]);
    const port = redis.port;
    const pulls = Array.from({ length: 12 }, (_, i) => pull(i % 2 ? a : b, `state/s${(i % 3) + 1}`, images[i % 3]!));
    await sleep(50);
    await redis.daemon.kill();
    t.faultsInjected++;
    await Promise.all(pulls);
    redis2 = await startDaemon({
      name: 'redis-server',
      cmd: 'redis-server',
      args: ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', work.path, '--protected-mode', 'yes'],
      logFile: join(work.path, 'redis2.log'),
      ready: async () => (await canConnect(port)) && (await redisCommand(port, ['PING'])) === 'PONG',
    });
    await sleep(1500);
    for (let i = 0; i < 3; i++) await pull(i % 2 ? a : b, `state/s${i + 1}`, images[i]!, true);
    assert.ok(!a.daemon.exited && !b.daemon.exited);
  });

  test('a replica SIGKILLed mid-index: the waiting replica takes the job over after --lock-ttl', async () => {
    assert.ok(redis2, 'redis is back');
    const url = `redis://127.0.0.1:${redis.port}`;
    const a = await start('ka', ['--redis', url, '--lock-ttl', '2'], faults.url);
    const b = await start('kb', ['--redis', url, '--lock-ttl', '2'], faults.url);
    const img = images[3]!;
    const layer = img.layers[0]!.descriptor.digest;
    faults.setRules([{ match: new RegExp(`/blobs/${layer}$`), fault: { mode: 'trickle', bytesPerTick: 8 * 1024, intervalMs: 200 }, times: 1 }]);
    void get(`${a.url}/v2/state/s4/manifests/v1`, { accept: ACCEPT }, 60_000);
    for (let i = 0; i < 100 && !faults.requests.some((q) => q.path.endsWith(layer)); i++) await sleep(50);
    assert.ok(faults.requests.some((q) => q.path.endsWith(layer)), 'replica A is indexing the layer');
    const started = Date.now();
    const waiting = pull(b, 'state/s4', img, true);
    await sleep(400);
    await a.kill();
    t.faultsInjected++;
    await waiting;
    const ms = Date.now() - started;
    process.stdout.write(`# takeover after SIGKILL: ${ms} ms\n`);
    assert.ok(ms < 15_000, `B finished in ${ms} ms`);
    faults.clearRules();
  });

  // Regression: the disk tier used to evict a zTOC while the SOCI index naming it stayed served (a 404 for
  // the zTOC). Lost documents and zTOCs are now rebuilt on demand, to the same digests.
  test('a disk cache filled to a small --cache-max-bytes still serves', async () => {
    const p = await start('full', ['--cache-max-bytes', '48KiB', '--memory-cache-bytes', '16KiB']);
    for (let round = 0; round < 2; round++) for (let i = 0; i < 3; i++) await pull(p, `state/s${i + 1}`, images[i]!, true);
    const dir = join(work.path, 'full', 'cache', 'blobs', 'sha256');
    const total = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    process.stdout.write(`# full disk cache: ${total} bytes on disk (limit 49152)\n`);
    assert.ok(total <= 49152 + 16384, `disk tier stays near its bound (${total})`);
  });

  test('a corrupt file planted in the disk cache is never served', async () => {
    let p = await start('plant', []);
    await pull(p, 'state/s5', images[4]!, true);
    await p.stop();
    const cacheDir = join(work.path, 'plant', 'cache');
    const { all } = auditCacheDir(cacheDir);
    for (const d of all) writeFileSync(join(cacheDir, 'blobs', 'sha256', d.slice(7)), Buffer.from('{"planted": "garbage"}'));
    t.faultsInjected += all.length;
    p = await start('plant', []);
    for (const d of all) {
      const m = await get(`${p.url}/v2/state/s5/manifests/${d}`, { accept: ACCEPT });
      const b = await get(`${p.url}/v2/state/s5/blobs/${d}`);
      for (const r of [m, b]) {
        if (r.status === 200) assert.equal(sha(r.body), d, 'whatever is served hashes to its digest');
        else judge(t, r, undefined);
        if (r.status === 200) t.requestsServed++;
      }
    }
    await pull(p, 'state/s5', images[4]!);
  });

  test('a corrupt value planted in Redis is never served', async () => {
    const url = `redis://127.0.0.1:${redis.port}`;
    const a = await start('pa', ['--redis', url]);
    await pull(a, 'state/s6', images[5]!, true);
    const keys = String(await redisCommand(redis.port, ['EVAL', "return table.concat(redis.call('keys', 'soci:blob:*'), ' ')", '0'])).split(' ').filter((k) => /:\d+$/.test(k));
    assert.ok(keys.length > 0, 'Redis holds blob chunks');
    for (const k of keys) await redisCommand(redis.port, ['SET', k, 'planted garbage']);
    const metaKeys = String(await redisCommand(redis.port, ['EVAL', "return table.concat(redis.call('keys', 'soci:meta:*'), ' ')", '0'])).split(' ').filter(Boolean);
    for (const k of metaKeys.filter((x) => x.includes('soci:'))) await redisCommand(redis.port, ['SET', k, '0123456789abcdef {"digest":"sha256:00"}']);
    t.faultsInjected += keys.length;
    const b = await start('pb', ['--redis', url]);
    await pull(b, 'state/s6', images[5]!);
    for (const k of keys) {
      const d = /\{(sha256:[a-f0-9]{64})\}/.exec(k)?.[1];
      if (!d) continue;
      const r = await get(`${b.url}/v2/state/s6/blobs/${d}`);
      if (r.status === 200) {
        t.requestsServed++;
        assert.equal(sha(r.body), d, 'a blob served from a damaged Redis still hashes to its digest');
      } else judge(t, r, undefined);
    }
    assert.ok(!a.daemon.exited && !b.daemon.exited);
  });
});
