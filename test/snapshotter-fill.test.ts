/**
 * `soci-proxy mount --fill-layer-bytes N` (issue #5, time to first output): layers of at most N compressed
 * bytes are fetched whole right after mount, before anything reads them, so a command's first reads are
 * answered from the span file; larger layers stay lazy. Checked against a real registry (its access log
 * counts every byte served) behind the proxy with `--no-cache-blobs`: after the fill settles the small
 * layers' files read back byte for byte with no further registry reads, the large layer is never read, and
 * with `--fill-layer-bytes 0` nothing is fetched until a read.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage, pushImage, randomBytes, runCommand, startProxy, startRegistry, tempDir, textBytes, type BuiltImage, type Proxy, type Registry } from './harness/index.js';

const ROOT = new URL('..', import.meta.url).pathname;
const HAVE_DIST = existsSync(join(ROOT, 'dist', 'cli.js'));
const HAVE_NATIVE = existsSync(join(ROOT, 'build', 'Release', 'soci_fuse.node'));
const canRun = process.getuid?.() === 0 && existsSync('/dev/fuse') && spawnSync('mount', ['--version']).status === 0;
const skip = !canRun ? 'needs root and /dev/fuse (skipped)' : !HAVE_DIST || !HAVE_NATIVE ? 'run `npm run build` first (dist/ or the native FUSE server missing)' : false;

const FILL = 1024 * 1024;

describe('mount --fill-layer-bytes', { skip, timeout: 120_000 }, () => {
  const work = tempDir('snap-fill');
  let registry: Registry;
  let proxy: Proxy;
  let image: BuiltImage;
  const small0: Record<string, Uint8Array> = {};
  const small1: Record<string, Uint8Array> = {};
  const cli = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    runCommand(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { cwd: ROOT, timeoutMs: 60_000 });
  const served = (i: number, mark: number): number => registry.blobBytes(image.layers[i]?.descriptor.digest ?? '', mark);
  /** Registry bytes of layers 0 and 1 once they stop growing (unchanged over 3 polls 250 ms apart). */
  const settledBytes = async (mark: number): Promise<number> => {
    const deadline = Date.now() + 30_000;
    let last = -1;
    let same = 0;
    while (Date.now() < deadline) {
      await registry.settle();
      const now = served(0, mark) + served(1, mark);
      same = now === last && now > 0 ? same + 1 : 0;
      if (same >= 3) return now;
      last = now;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`the fill did not settle: ${last} bytes`);
  };

  before(async () => {
    for (let i = 0; i < 6; i++) small0[`s0/r${i}.bin`] = randomBytes(90 * 1024, 10 + i);
    for (let i = 0; i < 40; i++) small1[`s1/t${i}.txt`] = textBytes(20_000 + i * 97, i);
    const large: Record<string, Uint8Array> = {};
    for (let i = 0; i < 12; i++) large[`big/b${i}.bin`] = randomBytes(256 * 1024, 100 + i);
    image = await buildImage({ tag: 'fill', layers: [{ files: small0 }, { files: small1 }, { files: large }] });
    assert.ok((image.layers[0]?.blob.length ?? 0) <= FILL && (image.layers[1]?.blob.length ?? 0) <= FILL, 'layers 0 and 1 are small');
    assert.ok((image.layers[2]?.blob.length ?? 0) > FILL, 'layer 2 is large');
    registry = await startRegistry({ dir: join(work.path, 'registry') });
    await pushImage(image, { registry: registry.url, repo: 'test/fill', tag: 'latest' });
    proxy = await startProxy({
      upstream: registry.url, dir: join(work.path, 'proxy'),
      extraArgs: ['--cache-dir', join(work.path, 'proxy-cache'), '--min-layer-size', '65536', '--span-size', '65536', '--index-mode', 'wait', '--log-level', 'warn', '--no-cache-blobs'],
    });
    const r = await fetch(`${proxy.url}/v2/test/fill/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' } });
    await r.arrayBuffer();
    assert.equal(r.status, 200);
    await registry.settle();
  });
  after(async () => {
    for (const mp of ['on', 'off']) await cli(['unmount', join(work.path, mp)]).catch(() => undefined);
    await proxy?.stop();
    await registry?.stop();
    work.remove();
  });

  test('small layers are fetched whole at mount; their reads then reach no registry; the large layer is not read', async (t) => {
    const mp = join(work.path, 'on');
    const mark = registry.requests().length;
    const m = await cli(['mount', 'test/fill:latest', mp, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-on'), '--detach', '--bg-fetch-period-ms', '0', '--fill-layer-bytes', String(FILL)]);
    assert.equal(m.code, 0, m.stderr);
    t.after(() => cli(['unmount', mp]));
    const filled = await settledBytes(mark);
    // The spans cover the compressed stream up to the last deflate block: all but the gzip trailer at most.
    for (const i of [0, 1]) {
      const blob = image.layers[i]?.blob.length ?? 0;
      assert.ok(served(i, mark) >= blob - 64 && served(i, mark) <= blob, `layer ${i}: ${served(i, mark)} of ${blob} bytes fetched by the fill`);
    }
    const mark2 = registry.requests().length;
    for (const [name, data] of [...Object.entries(small0), ...Object.entries(small1)]) {
      assert.deepEqual(readFileSync(join(mp, name)), Buffer.from(data), name);
    }
    await registry.settle();
    assert.equal(served(0, mark2) + served(1, mark2), 0, 'reads of the filled layers reached the registry');
    assert.equal(served(2, mark), 0, 'the large layer was read');
    t.diagnostic(`fill fetched ${filled} B of layers 0 and 1`);
  });

  test('--fill-layer-bytes 0: nothing is fetched before a read', async (t) => {
    const mp = join(work.path, 'off');
    const mark = registry.requests().length;
    const m = await cli(['mount', 'test/fill:latest', mp, '--registry', proxy.url, '--cache-dir', join(work.path, 'cache-off'), '--detach', '--bg-fetch-period-ms', '0', '--fill-layer-bytes', '0']);
    assert.equal(m.code, 0, m.stderr);
    t.after(() => cli(['unmount', mp]));
    await new Promise((r) => setTimeout(r, 1500));
    await registry.settle();
    assert.equal(served(0, mark) + served(1, mark) + served(2, mark), 0, 'layer bytes fetched with no read');
    const name = 's1/t3.txt';
    assert.deepEqual(readFileSync(join(mp, name)), Buffer.from(small1[name] as Uint8Array));
    await registry.settle();
    const got = served(1, mark);
    assert.ok(got > 0 && got < (image.layers[1]?.blob.length ?? 0), `one read fetched ${got} B, not the whole layer`);
  });
});
