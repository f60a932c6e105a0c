/**
 * The Snapshots gRPC service over a real unix socket with a grpc-js client built from the same .proto,
 * a stub `LayerProvider` (layers named in `lazyLayers` "mount" by writing a marker file; others have no
 * zTOC) and a fake mount table, so it runs without root. Checks the semantics containerd relies on
 * (containerd-integration.md §1, §2.1): Prepare/View/Mounts mount shapes, Commit, Stat, Update masks,
 * List (filters, streaming), Usage, Remove and Cleanup, the remote handshake (commit under the chain ID +
 * ALREADY_EXISTS, found by containerd's List filter), the normal path when the provider has no zTOC or
 * fails, remount on demand after a restart, and the error codes NotFound, AlreadyExists,
 * FailedPrecondition, InvalidArgument, Unavailable.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { LayerProvider, LayerRef, MountedLayer } from '../core/types.js';
import { loadSnapshotsService, serveSnapshotter, type SnapshotsServer } from './grpc-service.js';
import type { HostMounts } from './host-mounts.js';
import { Snapshotter } from './snapshotter.js';
import { compileFilters } from './filters.js';

class StubProvider implements LayerProvider {
  lazyLayers = new Set<string>();
  failing = new Set<string>();
  mounted = new Map<string, LayerRef>();
  calls: { op: string; ref: LayerRef; dir: string }[] = [];
  async mountLazy(ref: LayerRef, dir: string): Promise<MountedLayer | undefined> {
    this.calls.push({ op: 'mountLazy', ref, dir });
    if (this.failing.has(ref.layerDigest)) throw new Error('registry unreachable');
    if (!this.lazyLayers.has(ref.layerDigest)) return undefined;
    await writeFile(join(dir, 'LAZY'), ref.layerDigest);
    this.mounted.set(dir, ref);
    return { dir, lazy: true, unmount: async () => void this.mounted.delete(dir) };
  }
  async unpack(ref: LayerRef, dir: string): Promise<MountedLayer> {
    this.calls.push({ op: 'unpack', ref, dir });
    await writeFile(join(dir, 'UNPACKED'), ref.layerDigest);
    return { dir, lazy: false, unmount: async () => undefined };
  }
  async close(): Promise<void> {}
}

const noMounts: HostMounts = { under: async () => [], unmount: async () => undefined };

type Client = grpc.Client & Record<string, (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: any) => void) => void> & {
  List(req: object, md: grpc.Metadata): grpc.ClientReadableStream<any>;
};

const L1 = `sha256:${'1'.repeat(64)}`;
const L2 = `sha256:${'2'.repeat(64)}`;
const L3 = `sha256:${'3'.repeat(64)}`;
const CHAIN1 = `sha256:${'a'.repeat(64)}`;
const CHAIN2 = `sha256:${'b'.repeat(64)}`;
const CHAIN3 = `sha256:${'c'.repeat(64)}`;
const MANIFEST = `sha256:${'f'.repeat(64)}`;

const criLabels = (chain: string, layer: string): Record<string, string> => ({
  'containerd.io/snapshot.ref': chain,
  'containerd.io/snapshot/cri.image-ref': '127.0.0.1:5000/test/python:latest',
  'containerd.io/snapshot/cri.manifest-digest': MANIFEST,
  'containerd.io/snapshot/cri.layer-digest': layer,
});
const stargzLabels = (chain: string, layer: string): Record<string, string> => ({
  'containerd.io/snapshot.ref': chain,
  'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/test/python:latest',
  'containerd.io/snapshot/remote/stargz.digest': layer,
  'containerd.io/snapshot/remote/stargz.layers': `${layer}`,
});

describe('Snapshots gRPC service', () => {
  let dir: string;
  let root: string;
  let provider: StubProvider;
  let snap: Snapshotter;
  let server: SnapshotsServer;
  let client: Client;
  const md = new grpc.Metadata();
  md.set('containerd-namespace', 'default');

  const call = (method: string, req: object): Promise<any> =>
    new Promise((resolve, reject) => client[method]!(req, md, (err, res) => (err ? reject(err) : resolve(res))));
  const code = async (p: Promise<unknown>): Promise<number> => {
    try {
      await p;
    } catch (err) {
      return (err as grpc.ServiceError).code;
    }
    return grpc.status.OK;
  };
  const list = (filters: string[] = []): Promise<any[]> =>
    new Promise((resolve, reject) => {
      const out: any[] = [];
      const s = client.List({ snapshotter: 'soci', filters }, md);
      s.on('data', (m: { info: any[] }) => out.push(...m.info));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });

  async function start(): Promise<void> {
    snap = await Snapshotter.open({ root, provider, host: noMounts, clock: () => 1_700_000_000_123 });
    server = await serveSnapshotter(snap, join(dir, 'snap.sock'));
    const Ctor = grpc.makeGenericClientConstructor(await loadSnapshotsService(), 'Snapshots');
    client = new Ctor(`unix://${join(dir, 'snap.sock')}`, grpc.credentials.createInsecure()) as unknown as Client;
  }
  async function stop(): Promise<void> {
    client.close();
    await server.close();
    await snap.close();
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapsvc-'));
    root = join(dir, 'root');
    provider = new StubProvider();
    await start();
  });
  after(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('normal path: prepare, mounts, commit, stat, view, usage', async () => {
    const p = await call('Prepare', { snapshotter: 'soci', key: 'default/1/extract-1 ' + CHAIN1, parent: '', labels: { 'containerd.io/snapshot.ref': CHAIN1 } });
    assert.equal(p.mounts.length, 1);
    assert.equal(p.mounts[0].type, 'bind');
    assert.deepEqual(p.mounts[0].options, ['rw', 'rbind']);
    const upper1 = p.mounts[0].source as string;
    assert.ok(upper1.startsWith(join(root, 'snapshots')) && upper1.endsWith('/fs'));
    assert.equal(provider.calls.length, 0, 'no layer labels: the provider is not asked');
    assert.deepEqual((await call('Mounts', { key: 'default/1/extract-1 ' + CHAIN1 })).mounts, p.mounts);
    assert.equal(await code(call('Prepare', { key: 'default/1/extract-1 ' + CHAIN1, parent: '' })), grpc.status.ALREADY_EXISTS);
    writeFileSync(join(upper1, 'hello'), Buffer.alloc(10_000, 1));
    mkdirSync(join(upper1, 'sub'));
    const active = await call('Usage', { key: 'default/1/extract-1 ' + CHAIN1 });
    assert.equal(active.inodes, '3');
    assert.ok(Number(active.size) >= 10_000);
    await call('Commit', { name: 'default/2/' + CHAIN1, key: 'default/1/extract-1 ' + CHAIN1, labels: { x: 'y' } });
    assert.equal(await code(call('Stat', { key: 'default/1/extract-1 ' + CHAIN1 })), grpc.status.NOT_FOUND);
    const st = (await call('Stat', { key: 'default/2/' + CHAIN1 })).info;
    assert.deepEqual({ name: st.name, parent: st.parent, kind: st.kind, labels: st.labels }, { name: 'default/2/' + CHAIN1, parent: '', kind: 'COMMITTED', labels: { x: 'y' } });
    assert.deepEqual(st.created_at, { seconds: '1700000000', nanos: 123_000_000 });
    assert.deepEqual(await call('Usage', { key: 'default/2/' + CHAIN1 }), active);
    assert.equal(await code(call('Mounts', { key: 'default/2/' + CHAIN1 })), grpc.status.FAILED_PRECONDITION);
    assert.equal(await code(call('Commit', { name: 'default/9/x', key: 'default/2/' + CHAIN1 })), grpc.status.FAILED_PRECONDITION);
    assert.equal(await code(call('Commit', { name: 'default/9/x', key: 'nope' })), grpc.status.NOT_FOUND);

    // second layer on top: overlay with the first as lowerdir
    const p2 = await call('Prepare', { key: 'default/3/extract-2', parent: 'default/2/' + CHAIN1 });
    assert.equal(p2.mounts[0].type, 'overlay');
    const opts = p2.mounts[0].options as string[];
    assert.equal(opts.length, 3);
    assert.match(opts[0]!, /^workdir=.*\/work$/);
    assert.match(opts[1]!, /^upperdir=.*\/fs$/);
    assert.equal(opts[2], `lowerdir=${upper1}`);
    assert.equal(await code(call('Commit', { name: 'default/2/' + CHAIN1, key: 'default/3/extract-2' })), grpc.status.ALREADY_EXISTS);
    await call('Commit', { name: 'default/4/' + CHAIN2, key: 'default/3/extract-2' });
    const upper2 = opts[1]!.slice('upperdir='.length);

    // views: one parent = ro bind of it; two parents = lowerdir-only overlay, nearest first
    const v1 = await call('View', { key: 'default/5/v1', parent: 'default/2/' + CHAIN1 });
    assert.deepEqual(v1.mounts.map((m: any) => [m.type, m.source, m.options]), [['bind', upper1, ['ro', 'rbind']]]);
    const v2 = await call('View', { key: 'default/6/v2', parent: 'default/4/' + CHAIN2 });
    assert.deepEqual(v2.mounts.map((m: any) => [m.type, m.options]), [['overlay', [`lowerdir=${upper2}:${upper1}`]]]);
    assert.equal((await call('Stat', { key: 'default/6/v2' })).info.kind, 'VIEW');
    assert.equal(await code(call('View', { key: 'default/7/v3', parent: 'missing' })), grpc.status.NOT_FOUND);
    assert.equal(await code(call('Prepare', { key: 'default/7/p', parent: 'default/6/v2' })), grpc.status.INVALID_ARGUMENT);
    assert.equal(await code(call('Prepare', { key: 'default/7/p', parent: '', labels: { k: 'v'.repeat(4096) } })), grpc.status.INVALID_ARGUMENT);

    // remove: children block it (FailedPrecondition), missing is NotFound, the dir goes
    assert.equal(await code(call('Remove', { key: 'default/2/' + CHAIN1 })), grpc.status.FAILED_PRECONDITION);
    assert.equal(await code(call('Remove', { key: 'missing' })), grpc.status.NOT_FOUND);
    await call('Remove', { key: 'default/5/v1' });
    await call('Remove', { key: 'default/6/v2' });
    await call('Remove', { key: 'default/4/' + CHAIN2 });
    assert.equal(existsSync(upper2), false);
    await call('Remove', { key: 'default/2/' + CHAIN1 });
    assert.equal(existsSync(upper1), false);
    assert.deepEqual(await list(), []);
  });

  test('update labels with and without a field mask', async () => {
    await call('Prepare', { key: 'u1', parent: '', labels: { a: '1', b: '2' } });
    const r1 = await call('Update', { info: { name: 'u1', labels: { b: '3', c: '4' } }, update_mask: { paths: ['labels.b', 'labels.a'] } });
    assert.deepEqual(r1.info.labels, { b: '3' });
    const r2 = await call('Update', { info: { name: 'u1', labels: { z: '9' } } });
    assert.deepEqual(r2.info.labels, { z: '9' });
    assert.equal((await call('Stat', { key: 'u1' })).info.kind, 'ACTIVE');
    assert.equal(await code(call('Update', { info: { name: 'u1', labels: {} }, update_mask: { paths: ['parent'] } })), grpc.status.INVALID_ARGUMENT);
    assert.equal(await code(call('Update', { info: { name: 'nope', labels: {} } })), grpc.status.NOT_FOUND);
    await call('Remove', { key: 'u1' });
  });

  test('remote handshake: lazy layers commit under the chain ID and answer AlreadyExists', async () => {
    provider.lazyLayers.add(L1);
    provider.lazyLayers.add(L2);
    // layer 1 (cri.* labels)
    assert.equal(await code(call('Prepare', { key: 'default/10/extract-a ' + CHAIN1, parent: '', labels: criLabels(CHAIN1, L1) })), grpc.status.ALREADY_EXISTS);
    assert.deepEqual(provider.calls.at(-1)!.ref, { imageRef: '127.0.0.1:5000/test/python:latest', layerDigest: L1, manifestDigest: MANIFEST });
    // containerd's lookup (§2.1 step 5)
    const found = await list([`labels."containerd.io/snapshot.ref"==${CHAIN1},parent==""`]);
    assert.equal(found.length, 1);
    assert.equal(found[0].name, CHAIN1);
    assert.equal(found[0].kind, 'COMMITTED');
    assert.equal(found[0].labels['containerd.io/snapshot/remote'], 'remote snapshot');
    assert.equal(found[0].labels['containerd.io/snapshot/cri.layer-digest'], L1);
    assert.equal(await code(call('Stat', { key: 'default/10/extract-a ' + CHAIN1 })), grpc.status.NOT_FOUND, 'the active key is gone');
    // layer 2 (ctr-remote's stargz.* labels, no manifest digest)
    assert.equal(await code(call('Prepare', { key: 'default/11/extract-b ' + CHAIN2, parent: CHAIN1, labels: stargzLabels(CHAIN2, L2) })), grpc.status.ALREADY_EXISTS);
    assert.deepEqual(provider.calls.at(-1)!.ref, { imageRef: '127.0.0.1:5000/test/python:latest', layerDigest: L2 });
    assert.equal((await list([`labels."containerd.io/snapshot.ref"==${CHAIN2},parent=="${CHAIN1}"`])).length, 1);
    assert.equal((await list([`labels."containerd.io/snapshot.ref"==${CHAIN2},parent=="x"`])).length, 0);
    // a second pull (another namespace) of the same chain: AlreadyExists without asking the provider
    const n = provider.calls.length;
    assert.equal(await code(call('Prepare', { key: 'other/12/extract-c ' + CHAIN1, parent: '', labels: criLabels(CHAIN1, L1) })), grpc.status.ALREADY_EXISTS);
    assert.equal(provider.calls.length, n);
    // layer 3 has no zTOC: normal mounts, containerd unpacks and commits
    const p3 = await call('Prepare', { key: 'default/13/extract-d ' + CHAIN3, parent: CHAIN2, labels: criLabels(CHAIN3, L3) });
    assert.equal(p3.mounts[0].type, 'overlay');
    const fs1 = provider.calls.find((c) => c.ref.layerDigest === L1)!.dir;
    const fs2 = provider.calls.find((c) => c.ref.layerDigest === L2)!.dir;
    assert.equal(p3.mounts[0].options[2], `lowerdir=${fs2}:${fs1}`);
    await call('Commit', { name: 'default/14/' + CHAIN3, key: 'default/13/extract-d ' + CHAIN3 });
    // container rootfs on top of the chain
    const c1 = await call('Prepare', { key: 'default/15/c1', parent: 'default/14/' + CHAIN3 });
    const fs3 = p3.mounts[0].options[1].slice('upperdir='.length);
    assert.equal(c1.mounts[0].options[2], `lowerdir=${fs3}:${fs2}:${fs1}`);
    assert.equal(provider.mounted.size, 2);
    assert.equal(await readFile(join(fs1, 'LAZY'), 'utf8'), L1);
  });

  test('a failing provider falls back to the normal path', async () => {
    provider.failing.add(L3);
    const p = await call('Prepare', { key: 'default/20/extract-e', parent: '', labels: criLabels(`sha256:${'d'.repeat(64)}`, L3) });
    assert.equal(p.mounts[0].type, 'bind');
    await call('Remove', { key: 'default/20/extract-e' });
    provider.failing.delete(L3);
  });

  test('restart: records survive, remote layers remount on demand, GC removes everything', async () => {
    const before = (await list()).map((i) => [i.name, i.parent, i.kind]).sort();
    await stop();
    assert.equal(provider.mounted.size, 0, 'close unmounts every lazy layer');
    provider.calls.length = 0;
    await start();
    assert.deepEqual((await list()).map((i) => [i.name, i.parent, i.kind]).sort(), before);
    assert.equal(provider.calls.length, 0, 'nothing is mounted until needed');
    const m = await call('Mounts', { key: 'default/15/c1' });
    assert.equal(m.mounts[0].type, 'overlay');
    assert.deepEqual(provider.calls.map((c) => c.ref.layerDigest).sort(), [L1, L2]);
    assert.equal(provider.mounted.size, 2);
    // a layer that lost its zTOC is unpacked instead
    const c2fs = await call('Prepare', { key: 'default/16/c2', parent: 'default/14/' + CHAIN3 });
    assert.equal(c2fs.mounts[0].type, 'overlay');
    // removal from the top, as containerd's GC does; Cleanup frees orphan dirs
    mkdirSync(join(root, 'snapshots', '999', 'fs'), { recursive: true });
    for (const k of ['default/15/c1', 'default/16/c2', 'default/14/' + CHAIN3, CHAIN2, CHAIN1]) await call('Remove', { key: k });
    assert.equal(provider.mounted.size, 0);
    await call('Cleanup', {});
    assert.deepEqual(readdirSync(join(root, 'snapshots')), []);
    assert.deepEqual(await list(), []);
    // unavailable: a remote parent that can no longer be mounted or unpacked
    provider.lazyLayers.add(L1);
    assert.equal(await code(call('Prepare', { key: 'k', parent: '', labels: criLabels(CHAIN1, L1) })), grpc.status.ALREADY_EXISTS);
    await stop();
    provider.unpack = async () => { throw new Error('gone'); };
    provider.lazyLayers.clear();
    await start();
    assert.equal(await code(call('Prepare', { key: 'c', parent: CHAIN1 })), grpc.status.UNAVAILABLE);
    await call('Remove', { key: CHAIN1 });
  });

  test('list streams many snapshots in chunks and applies filters', async () => {
    for (let i = 0; i < 230; i++) await call('Prepare', { key: `bulk/${i}`, parent: '', labels: { n: String(i % 3) } });
    assert.equal((await list()).length, 230);
    assert.equal((await list(['labels.n==1'])).length, 77);
    assert.equal((await list(['labels.n==1', 'labels.n==2'])).length, 153);
    assert.equal((await list(['kind==active,labels.n!=0'])).length, 153);
    assert.equal((await list(['name~=/^bulk\\/1[0-9]$/'])).length, 10);
    assert.equal(await code(list(['labels."unterminated'])), grpc.status.INVALID_ARGUMENT);
    for (let i = 0; i < 230; i++) await call('Remove', { key: `bulk/${i}` });
  });
});

test('filters parse containerd syntax', () => {
  const f = compileFilters([`labels."containerd.io/snapshot.ref"==sha256:abc,parent=="default/3/x y"`]);
  const base = { name: 'n', parent: 'default/3/x y', kind: 'committed', labels: { 'containerd.io/snapshot.ref': 'sha256:abc' } };
  assert.equal(f(base), true);
  assert.equal(f({ ...base, parent: 'other' }), false);
  assert.equal(f({ ...base, labels: {} }), false);
  assert.equal(compileFilters(['labels.a'])({ ...base, labels: { a: 'x' } }), true);
  assert.equal(compileFilters(['labels.a'])({ ...base, labels: {} }), false);
  assert.equal(compileFilters([])(base), true);
  assert.throws(() => compileFilters(['==x']), /filter/);
});
