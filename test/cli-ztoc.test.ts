/**
 * `soci-proxy ztoc build|info|extract` as a user runs them (`node --import tsx src/cli.ts ...`), on layers
 * generated at test time: build writes the zTOC and prints its digest, refuses zstd, multi-member gzip and
 * damaged layers with a non-zero exit and a one-line reason; info --json describes spans and entries as the
 * codec decodes them; extract writes exactly a file's bytes for a name given as stored or cleaned; and two
 * builds of one layer, in two processes, are byte-identical (and equal the in-process `indexLayer` result).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeZtoc, indexLayer } from '../src/indexer/index.js';
import { MediaType } from '../src/oci/media-types.js';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
let root = '';
let gz = '';
let tar = '';
const files = new Map<string, Buffer>();

function cli(...args: string[]): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: REPO, maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

before(() => {
  root = mkdtempSync(join(tmpdir(), 'cli-ztoc-'));
  const tree = join(root, 'tree');
  mkdirSync(join(tree, 'a/b'), { recursive: true });
  const add = (name: string, data: Buffer): void => { writeFileSync(join(tree, name), data); files.set(name, data); };
  add('a/b/random', randomBytes(300_000));
  add('a/b/text', Buffer.from('lorem ipsum dolor sit amet\n'.repeat(20_000)));
  add('a/empty', Buffer.alloc(0));
  add('a/513', randomBytes(513));
  add('ünïcödé.txt', Buffer.from('unicode\n'));
  tar = join(root, 'layer.tar');
  const r = spawnSync('tar', ['--format=gnu', '--sort=name', '-C', tree, '-cf', tar, '.']);
  assert.equal(r.status, 0, r.stderr?.toString());
  gz = join(root, 'layer.tar.gz');
  writeFileSync(gz, spawnSync('gzip', ['-6', '-c', tar]).stdout);
});
after(() => { if (root) rmSync(root, { recursive: true, force: true }); });

describe('soci-proxy ztoc', () => {
  test('build writes the zTOC, prints its digest, and is byte-identical across runs and to indexLayer', async () => {
    const z1 = join(root, 'one.ztoc');
    const z2 = join(root, 'two.ztoc');
    const a = cli('ztoc', 'build', gz, '--out', z1, '--span-size', '65536');
    assert.equal(a.status, 0, a.stderr);
    const bytes = readFileSync(z1);
    assert.match(a.stdout.toString(), new RegExp(`^sha256:${sha256(bytes)} ${bytes.length} bytes, \\d+ spans, \\d+ entries \\(layer sha256:${sha256(readFileSync(gz))}\\)\\n$`));
    const b = cli('ztoc', 'build', gz, '--out', z2, '--span-size', '65536', '--engine', 'js');
    assert.equal(b.status, 0, b.stderr);
    assert.ok(readFileSync(z2).equals(bytes), 'two builds (native/auto and js) differ');
    const r = await indexLayer((async function* () { yield readFileSync(gz); })(), { mediaType: MediaType.ociLayerGzip, spanSize: 65536 });
    assert.ok(r.status === 'indexed' && Buffer.from(r.ztoc).equals(bytes), 'CLI and indexLayer differ');
  });

  test('build of an uncompressed tar', () => {
    const z = join(root, 'tar.ztoc');
    const r = cli('ztoc', 'build', tar, '--out', z, '--span-size', '64KiB');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(decodeZtoc(readFileSync(z)).compressionAlgorithm, 'uncompressed');
  });

  test('build refuses zstd, multi-member gzip and damaged layers with one line and no file', () => {
    const zstd = join(root, 'layer.zst');
    writeFileSync(zstd, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(100)]));
    const multi = join(root, 'multi.gz');
    writeFileSync(multi, Buffer.concat([readFileSync(gz), readFileSync(gz)]));
    const bad = join(root, 'bad.gz');
    const b = readFileSync(gz);
    writeFileSync(bad, b.subarray(0, b.length >> 1));
    for (const [layer, code] of [[zstd, 'UNSUPPORTED_COMPRESSION'], [multi, 'MULTI_MEMBER_GZIP'], [bad, 'CORRUPT_LAYER']] as const) {
      const out = join(root, `${code}.ztoc`);
      const r = cli('ztoc', 'build', layer, '--out', out);
      assert.notEqual(r.status, 0, `${code}: exit status`);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, `${code}: one line, got ${JSON.stringify(r.stderr)}`);
      assert.ok(r.stderr.includes(code), `${code}: ${r.stderr}`);
      assert.ok(!existsSync(out), `${code}: no zTOC written`);
    }
  });

  test('info --json describes the spans and entries the codec decodes', () => {
    const z = join(root, 'info.ztoc');
    assert.equal(cli('ztoc', 'build', gz, '--out', z, '--span-size', '65536').status, 0);
    const r = cli('ztoc', 'info', z, '--json');
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout.toString()) as { spans: Array<{ id: number; start: number; end: number; digest: string }>; entries: Array<{ name: string }>; maxSpanId: number };
    const dec = decodeZtoc(readFileSync(z));
    assert.equal(info.maxSpanId, dec.maxSpanId);
    assert.ok(info.spans.length >= 4);
    assert.equal(info.spans.length, dec.maxSpanId + 1);
    assert.deepEqual(info.spans.map((s) => s.digest), dec.spanDigests);
    const blob = readFileSync(gz);
    for (const s of info.spans) assert.equal(`sha256:${sha256(blob.subarray(s.start, s.end))}`, s.digest, `span ${s.id}`);
    assert.deepEqual(info.entries, JSON.parse(JSON.stringify(dec.toc)));
    for (const name of files.keys()) assert.ok(info.entries.some((e) => e.name === `./${name}`), name);
    const text = cli('ztoc', 'info', z);
    assert.equal(text.status, 0);
    assert.match(text.stdout.toString(), new RegExp(`^spans: ${dec.maxSpanId + 1}$`, 'm'));
  });

  test('extract writes exactly the file bytes, for names as stored and cleaned', () => {
    const z = join(root, 'extract.ztoc');
    assert.equal(cli('ztoc', 'build', gz, '--out', z, '--span-size', '65536').status, 0);
    for (const [name, data] of files) {
      for (const path of name === 'a/b/random' ? [`./${name}`, name, `/${name}`] : [name]) {
        const r = cli('ztoc', 'extract', z, gz, path);
        assert.equal(r.status, 0, `${path}: ${r.stderr}`);
        assert.ok(r.stdout.equals(data), `${path}: ${r.stdout.length} bytes, want ${data.length}`);
      }
    }
    const missing = cli('ztoc', 'extract', z, gz, 'a/nope');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /not in the zTOC/);
    const dir = cli('ztoc', 'extract', z, gz, './a/b');
    assert.equal(dir.status, 2);
    assert.match(dir.stderr, /is a dir/);
  });
});
