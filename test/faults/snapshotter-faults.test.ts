/**
 * Snapshotter faults with the real pieces on loopback: docker-registry upstream, the built proxy
 * (`dist/cli.js serve`, on a fixed port so it can be stopped and started again in place), the TCP fault
 * proxy of this folder between the snapshotter and the proxy (the snapshotter's `mirror`), `dist/cli.js
 * snapshotter` as containerd 1.6's proxy plugin `soci`, and containerd itself. The image is the harness
 * python image plus a layer of random files nobody reads at start, lazily pulled with `ctr-remote image
 * rpull`. Faults: (1) the proxy stopped, then stalling, while a container and a plain reader read unfetched
 * spans: EIO within the configured read deadline, never a hang, and the right bytes once the proxy is back
 * on the same port; (2) span bodies with one flipped byte: EIO (never wrong bytes) while every answer is
 * damaged, the right bytes when only the first answer is (the refetch) and once the damage stops; (3) the
 * snapshotter SIGKILLed with live FUSE mounts and a running container, N times: new containers work after
 * each restart, the running one fails cleanly, FUSE mounts under its root never pile up, and `ctr image rm
 * --sync` leaves none. Needs root, /dev/fuse, containerd, runc, ctr, ctr-remote and dist/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildImage, freePort, pushImage, pythonImage, randomBytes, runCommand, startContainerd, startDaemon, startRegistry, tempDir,
  type BuiltImage, type Containerd, type Daemon, type Registry,
} from '../harness/index.js';
import { containerdFuseSkip } from '../harness/capabilities.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { sleep } from './common.js';
import { record, tally } from './summary.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist', 'cli.js');
const skip = containerdFuseSkip(ROOT, CLI);

/** The snapshotter's deadlines: one FUSE read, one span HTTP attempt; one retry. */
const READ_MS = 4000;
const FETCH_MS = 1000;
/**
 * Random files of 128 KiB, each in a layer of its own (so read-ahead of one file never fetches another's
 * spans): each fault reads a file of a layer nothing has read yet, and the fault proxy's request log
 * proves a span fetch was attempted.
 */
const FILES = 11;
const FILE_SIZE = 128 * 1024;
const fileBytes = (i: number): Buffer => randomBytes(FILE_SIZE, 900 + i);
const fileHash = (i: number): string => createHash('sha256').update(fileBytes(i)).digest('hex');
const KILL_CYCLES = 3;

/** FUSE mount points under `dir`, one entry per /proc/mounts line (a stacked mount shows twice). */
function fuseMounts(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '))
    .filter((f) => f[2]?.startsWith('fuse') && f[1] !== undefined && f[1].startsWith(`${dir}/`)).map((f) => f[1]!).sort();
}

if (skip) record('snapshotter', { ...tally(), notes: `skipped: ${skip}` });

describe('snapshotter faults', { skip }, () => {
  const t = tally();
  const notes: string[] = [];
  const work = tempDir('faults-snap');
  let registry: Registry;
  let proxy: Daemon | undefined;
  let proxyPort: number;
  let faults: FaultProxy;
  let ctrd: Containerd;
  let snap: Daemon | undefined;
  let image: BuiltImage;
  let ref: string;
  /** The FUSE mount of each random file's layer. */
  const mountOf: string[] = [];
  const pathOf = (i: number): string => join(mountOf[i]!, 'faults', `blob-${i}.bin`);
  const sock = join(work.path, 'snap', 'soci.sock');
  const snapRoot = join(work.path, 'snap', 'root');

  const startTheProxy = async (): Promise<Daemon> => startDaemon({
    name: 'soci-proxy', cmd: process.execPath, cwd: ROOT, logFile: join(work.path, 'proxy.log'),
    args: [CLI, 'serve', '--listen', `127.0.0.1:${proxyPort}`, '--upstream', registry.url, '--cache-dir', join(work.path, 'proxy-cache'),
      '--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--log-level', 'warn'],
    ready: async () => (await fetch(`http://127.0.0.1:${proxyPort}/healthz`).then(async (r) => (await r.arrayBuffer(), r.status), () => 0)) === 200,
    timeoutMs: 20_000,
  });

  const startSnapshotter = async (): Promise<Daemon> => {
    writeFileSync(join(work.path, 'snap.json'), JSON.stringify({
      registries: { [`127.0.0.1:${proxyPort}`]: { mirror: faults.url } },
      backgroundFetch: { periodMs: 0, quietMs: 0 },
      timeouts: { readMs: READ_MS, fetchMs: FETCH_MS, requestMs: 5000 },
      retries: 1,
      logLevel: 'info',
    }));
    const d = await startDaemon({
      name: 'soci-snapshotter', cmd: process.execPath, cwd: ROOT, logFile: join(work.path, 'snapshotter.log'),
      args: [CLI, 'snapshotter', '--address', sock, '--root', snapRoot, '--config', join(work.path, 'snap.json')],
      ready: () => existsSync(sock),
      timeoutMs: 20_000,
    });
    return d;
  };

  /** Waits until containerd has redialled the (restarted) plugin: its gRPC backoff is about 1 s, growing 1.6x. */
  const waitRedial = async (): Promise<void> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await ctrd.ctr(['snapshots', '--snapshotter', 'soci', 'usage'], { timeoutMs: 10_000 });
      if (r.code === 0 || !/connection error|Unavailable|unavailable/.test(r.stderr) || Date.now() > deadline) return;
      await sleep(300);
    }
  };

  const snapLog = (): string => `\n--- snapshotter log:\n${snap?.logs().slice(-2500) ?? ''}`;

  interface Read { code: number; ms: number; hash: string; err: string }

  /** sha256 of a file as a separate process reads it; a run to the deadline counts as a hang. */
  const readFile = async (path: string, timeoutMs = 30_000): Promise<Read> => {
    const t0 = performance.now();
    const r = await runCommand('sha256sum', [path], { check: false, timeoutMs });
    const ms = performance.now() - t0;
    t.requestsServed++;
    if (ms >= timeoutMs - 50) t.hangs++;
    return { code: r.code, ms, hash: r.code === 0 ? r.stdout.split(' ')[0]! : '', err: r.stderr.trim() };
  };

  /** A container that prints the sha256 of `/faults/blob-<i>.bin`. */
  const containerRead = async (name: string, i: number, timeoutMs = 60_000): Promise<Read> => {
    const py = `import hashlib; print(hashlib.sha256(open('/faults/blob-${i}.bin','rb').read()).hexdigest())`;
    const t0 = performance.now();
    const r = await ctrd.ctr(['run', '--rm', '--snapshotter', 'soci', ref, name, '/usr/bin/python3.11', '-c', py], { timeoutMs });
    const ms = performance.now() - t0;
    t.requestsServed++;
    if (ms >= timeoutMs - 50) t.hangs++;
    return { code: r.code, ms, hash: r.code === 0 ? r.stdout.trim() : '', err: `${r.stderr}${r.stdout}`.trim() };
  };

  /** Success must carry the right bytes (a wrong hash is counted and fails the test); returns whether it succeeded. */
  const judge = (r: Read, i: number): boolean => {
    if (r.code !== 0) return false;
    if (r.hash !== fileHash(i)) t.wrongBytes++;
    assert.equal(r.hash, fileHash(i), `blob-${i} read back wrong bytes`);
    return true;
  };

  before(async () => {
    registry = await startRegistry({ dir: join(work.path, 'registry') });
    const py = await pythonImage();
    image = await buildImage({
      tag: 'pyfaults',
      layers: [...py.layers.map((l) => ({ tarGz: l.blob })), ...[...Array(FILES).keys()].map((i) => ({ files: { [`faults/blob-${i}.bin`]: fileBytes(i) } }))],
      config: { cmd: ['/usr/bin/python3.11', '-c', 'import json; print(json.dumps({"ok": 1}))'] },
    });
    await pushImage(image, { registry: registry.url, repo: 'test/pyfaults', tag: 'latest' });
    proxyPort = await freePort();
    proxy = await startTheProxy();
    faults = await startFaultProxy(`127.0.0.1:${proxyPort}`);
    ref = `127.0.0.1:${proxyPort}/test/pyfaults:latest`;
    // Build the SOCI index first (index-mode wait) so the pull is lazy.
    const warm = await fetch(`http://127.0.0.1:${proxyPort}/v2/test/pyfaults/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    await warm.arrayBuffer();
    assert.equal(warm.status, 200);
    snap = await startSnapshotter();
    ctrd = await startContainerd({ dir: join(work.path, 'containerd'), proxyPlugins: { soci: sock } });
    const pull = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'soci', ref]);
    assert.equal(pull.code, 0, `rpull: ${pull.stderr}${snapLog()}`);
    const mounts = fuseMounts(snapRoot);
    assert.equal(mounts.length, image.layers.length, `one FUSE mount per layer: ${mounts.join(', ')}${snapLog()}`);
    // Locate the random-files layer from a child process (never a sync call into a FUSE mount from here).
    const find = await runCommand('sh', ['-c', `for m in ${mounts.join(' ')}; do ls "$m/faults" 2>/dev/null | sed "s|^|$m |"; done`], { check: false, timeoutMs: 20_000 });
    for (const line of find.stdout.trim().split('\n')) {
      const [m, name] = line.split(' ');
      const i = Number(/^blob-(\d+)\.bin$/.exec(name ?? '')?.[1]);
      assert.equal(mountOf[i], undefined, `blob-${i} is in one layer`);
      mountOf[i] = m!;
    }
    assert.equal(mountOf.filter(Boolean).length, FILES, `every random file has its own lazy layer: ${find.stdout}`);
    // One healthy container first: python's own spans are then in the snapshotter's span cache.
    const ok = await containerRead('warm', 0);
    assert.ok(judge(ok, 0), `warm container: ${ok.err}${snapLog()}`);
    notes.push(`healthy container ${ok.ms.toFixed(0)} ms`);
  });

  after(async () => {
    t.faultsInjected += faults?.injected ?? 0;
    t.crashes += (proxy?.exited ? 1 : 0) + (snap?.exited ? 1 : 0); // ours are stopped only below
    t.notes = notes.join('; ');
    record('snapshotter', t);
    process.stdout.write(`# snapshotter faults: ${t.notes}\n`);
    await ctrd?.ctr(['task', 'kill', '-s', 'SIGKILL', 'longrun'], { timeoutMs: 10_000 }).catch(() => undefined);
    await ctrd?.ctr(['task', 'delete', '-f', 'longrun'], { timeoutMs: 10_000 }).catch(() => undefined);
    await ctrd?.ctr(['container', 'rm', 'longrun'], { timeoutMs: 10_000 }).catch(() => undefined);
    await ctrd?.stop();
    await snap?.stop();
    for (const mp of fuseMounts(snapRoot)) await runCommand('umount', ['-l', mp], { check: false });
    await faults?.close();
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('proxy stopped, then stalling, under a container and a reader: EIO within the read deadline; right bytes once it is back', async () => {
    await proxy!.stop();
    proxy = undefined;
    t.faultsInjected++;
    // a container reading an unfetched span: python reports EIO, the container exits non-zero, bounded
    let seen = faults.requests.length;
    const c = await containerRead('eio', 1);
    assert.notEqual(c.code, 0, `the container read blob-1 with the proxy stopped: ${c.hash}`);
    assert.ok(faults.requests.length > seen, 'the container read asked for a span');
    assert.match(c.err, /Input\/output error|Errno 5/, c.err);
    const boundC = READ_MS + 8000; // the read deadline plus container start and teardown
    assert.ok(c.ms < boundC, `container failed after ${c.ms.toFixed(0)} ms (bound ${boundC})`);
    // a plain reader of the FUSE layer
    seen = faults.requests.length;
    const r = await readFile(pathOf(2));
    assert.notEqual(r.code, 0);
    assert.ok(faults.requests.length > seen, 'the read asked for a span');
    assert.match(r.err, /Input\/output error/, r.err);
    assert.ok(r.ms < READ_MS + 1000, `EIO after ${r.ms.toFixed(0)} ms`);
    notes.push(`proxy down: container EIO in ${c.ms.toFixed(0)} ms, reader EIO in ${r.ms.toFixed(0)} ms`);

    // back on the same port, but every span body stalls: each attempt hits its deadline, the read gets EIO
    proxy = await startTheProxy();
    faults.setRules([{ match: (q) => q.method === 'GET' && q.path.includes('/blobs/'), fault: { mode: 'stall', ms: 20_000, atByte: 10 } }]);
    const stalls = faults.injected;
    const s = await readFile(pathOf(3));
    faults.clearRules();
    assert.notEqual(s.code, 0, `read blob-3 through a stalled body: ${s.hash}`);
    assert.ok(faults.injected > stalls, 'span bodies were stalled');
    assert.match(s.err, /Input\/output error/, s.err);
    assert.ok(s.ms < READ_MS + 1000, `EIO after ${s.ms.toFixed(0)} ms with stalled bodies`);
    notes.push(`stalled bodies: reader EIO in ${s.ms.toFixed(0)} ms (read deadline ${READ_MS} ms)`);

    // healthy again: the same files read back right, in a container and directly
    for (const i of [2, 3]) {
      const ok = await readFile(pathOf(i));
      assert.ok(judge(ok, i), `blob-${i} after the proxy came back: ${ok.err}${snapLog()}`);
    }
    const ok = await containerRead('back', 1);
    assert.ok(judge(ok, 1), `container after the proxy came back: ${ok.err}${snapLog()}`);
  });

  test('span bodies with a flipped byte: EIO, never wrong bytes; a clean refetch and a healed relay give the right bytes', async (t2) => {
    const spans = (q: { method: string; path: string }): boolean => q.method === 'GET' && q.path.includes('/blobs/');
    // every answer damaged: the span never verifies
    t2.after(() => faults.clearRules());
    faults.setRules([{ match: spans, fault: { mode: 'flip', offset: 17 } }]);
    for (const i of [4, 5]) {
      const before = faults.injected;
      const r = await readFile(pathOf(i));
      assert.equal(judge(r, i), false, `blob-${i} read succeeded through a corrupting relay`);
      assert.match(r.err, /Input\/output error/, r.err);
      assert.ok(r.ms < READ_MS + 1000, `EIO after ${r.ms.toFixed(0)} ms`);
      assert.ok(faults.injected - before >= 2, `the relay damaged the span body and its refetch (${faults.injected - before})`);
    }
    const before = faults.injected;
    const c = await containerRead('flip', 6);
    assert.ok(faults.injected > before, 'the container read was served damaged spans');
    assert.equal(judge(c, 6), false, 'a container read wrong-digest spans');
    assert.match(c.err, /Input\/output error|Errno 5/, c.err);
    // only the first answer damaged: the refetch verifies and the read succeeds
    faults.setRules([{ match: spans, fault: { mode: 'flip', offset: 17 }, times: 1 }]);
    const onceBefore = faults.injected;
    const once = await readFile(pathOf(7));
    assert.equal(faults.injected, onceBefore + 1, 'exactly one span body was damaged');
    assert.ok(judge(once, 7), `one damaged answer is refetched: ${once.err}${snapLog()}`);
    faults.clearRules();
    for (const i of [4, 5]) {
      const r = await readFile(pathOf(i));
      assert.ok(judge(r, i), `blob-${i} once the relay stopped corrupting: ${r.err}`);
    }
    const ok = await containerRead('healed', 6);
    assert.ok(judge(ok, 6), `container once the relay stopped corrupting: ${ok.err}`);
    assert.match(snap!.logs(), /does not match its digest/, 'the snapshotter logged the digest mismatch');
  });

  test(`snapshotter SIGKILLed ${KILL_CYCLES} times with live FUSE mounts and a running container`, async () => {
    const healthy = fuseMounts(snapRoot);
    assert.equal(healthy.length, image.layers.length);
    const run = await ctrd.ctr(['run', '-d', '--snapshotter', 'soci', ref, 'longrun', '/usr/bin/python3.11', '-c', 'import time; time.sleep(300)'], { timeoutMs: 60_000 });
    assert.equal(run.code, 0, `ctr run -d: ${run.stderr}`);
    const observed: string[] = [];
    let next = 8;
    for (let cycle = 1; cycle <= KILL_CYCLES; cycle++) {
      const exit = await snap!.kill();
      assert.equal(exit.signal, 'SIGKILL');
      t.faultsInjected++;
      const stale = fuseMounts(snapRoot);
      observed.push(`kill ${cycle}: ${stale.length} fuse entries`);
      // the running container's rootfs has the dead FUSE layers as lowerdirs: an exec must fail cleanly or work, bounded
      const t0 = performance.now();
      const ex = await ctrd.ctr(['task', 'exec', '--exec-id', `x${cycle}`, 'longrun', '/usr/bin/python3.11', '-c', `print(len(open('/faults/blob-${next}.bin','rb').read()))`], { timeoutMs: 30_000 });
      const exMs = performance.now() - t0;
      t.requestsServed++;
      if (exMs >= 29_900) t.hangs++;
      assert.ok(exMs < 29_900, `exec into the orphaned rootfs hung (${exMs.toFixed(0)} ms)`);
      if (ex.code === 0) assert.equal(ex.stdout.trim(), String(FILE_SIZE));
      observed.push(`exec ${ex.code === 0 ? 'ok' : `failed (${(ex.stderr.match(/transport endpoint is not connected|input\/output error|no such file/i) ?? ['exit ' + ex.code])[0]})`} in ${exMs.toFixed(0)} ms`);
      // a stale read from the dead mount returns an error at once
      const dead = await readFile(pathOf(next), 10_000);
      assert.notEqual(dead.code, 0, 'a read from a killed daemon\'s mount failed');
      assert.ok(dead.ms < 5000, `stale mount answered after ${dead.ms.toFixed(0)} ms`);

      snap = await startSnapshotter();
      await waitRedial();
      const ok = await containerRead(`after-kill-${cycle}`, next);
      assert.ok(judge(ok, next), `container after restart ${cycle}: ${ok.err}${snapLog()}`);
      const now = fuseMounts(snapRoot);
      assert.deepEqual(now, healthy, `after restart ${cycle} the layers are mounted once each at the same places, none piled up:\n${now.join('\n')}`);
      // the remounted layer serves the plain reader again
      const again = await readFile(pathOf(next));
      assert.ok(judge(again, next), `reader after restart ${cycle}: ${again.err}`);
      next++;
    }
    await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', 'longrun'], { timeoutMs: 10_000 });
    await ctrd.ctr(['task', 'delete', '-f', 'longrun'], { timeoutMs: 20_000 });
    await ctrd.ctr(['container', 'rm', 'longrun'], { timeoutMs: 20_000 });

    // one more kill, no container after it: the restarted daemon holds nothing; GC must clean the stale mounts
    await snap!.kill();
    t.faultsInjected++;
    const stale = fuseMounts(snapRoot);
    snap = await startSnapshotter();
    await waitRedial();
    observed.push(`final kill: ${stale.length} stale fuse entries before GC`);
    const rm = await ctrd.ctr(['image', 'rm', '--sync', ref], { timeoutMs: 60_000 });
    assert.equal(rm.code, 0, `image rm: ${rm.stderr}`);
    const left = fuseMounts(snapRoot);
    observed.push(`after image rm --sync: ${left.length} fuse entries`);
    notes.push(observed.join(', '));
    assert.deepEqual(left, [], `ctr image rm --sync (GC) leaves no FUSE mount, stale or live:\n${readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(snapRoot)).join('\n')}${snapLog()}`);
    const ls = (await ctrd.ctr(['snapshots', '--snapshotter', 'soci', 'ls'])).stdout.trim().split('\n');
    assert.equal(ls.length, 1, `no snapshot left: ${ls.join('\n')}`);
  });
});
