/**
 * Independent oracle for the gzip checkpoint engine: test/oracles/zran-checkpoints.c, compiled at test
 * time against the system zlib, computes each fixture's checkpoint blob by the §5.2 rules in its own
 * way (zran-style ring window, inflate(Z_BLOCK), windowBits 47, odd input buffer). Both engines' blobs
 * must equal it byte for byte. Skipped, with a message, when gcc or zlib.h is missing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeGzipFixtures, runCheckpointer } from './oracles/gzip-fixtures.js';
import { decodeZinfoBlob, encodeZinfoBlob, nativeEngineAvailable } from '../src/indexer/gzip/index.js';

const source = fileURLToPath(new URL('./oracles/zran-checkpoints.c', import.meta.url));
const haveGcc = spawnSync('gcc', ['--version']).status === 0;
const haveZlib = existsSync('/usr/include/zlib.h');
const skip = !haveGcc || !haveZlib ? `oracle needs gcc and zlib.h (gcc: ${haveGcc}, /usr/include/zlib.h: ${haveZlib})` : false;
const engines = nativeEngineAvailable() ? (['native', 'js'] as const) : (['js'] as const);

let fx: ReturnType<typeof makeGzipFixtures>;
let oracle = '';
before(() => {
  fx = makeGzipFixtures();
  if (skip) return;
  oracle = join(fx.dir, 'zran-checkpoints');
  execFileSync('gcc', ['-O2', '-Wall', '-o', oracle, source, '-lz']);
});
after(() => fx.cleanup());

describe('zran oracle', { skip }, () => {
  test('both engines produce the oracle blob on every fixture, also at other span sizes', () => {
    let total = 0;
    for (const f of fx.fixtures) {
      for (const spanSize of [f.spanSize, 0, 200000, 1 << 30]) {
        const want = execFileSync(oracle, [f.path, String(spanSize)], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
        const n = decodeZinfoBlob(want).checkpoints.length;
        assert.ok(n >= 1);
        total += n;
        for (const engine of engines) {
          const got = encodeZinfoBlob(runCheckpointer(f.bytes, { engine, spanSize, chunk: 65536 }).result.checkpoints, spanSize);
          assert.ok(Buffer.from(got).equals(want), `${f.name} span ${spanSize} ${engine}: blob differs from the oracle (${decodeZinfoBlob(got).checkpoints.length} vs ${n} checkpoints)`);
        }
      }
    }
    assert.ok(total > 100, `only ${total} checkpoints compared`);
  });

  test('the oracle rejects a damaged stream (so a silent oracle cannot pass)', () => {
    const f = fx.fixtures.find((x) => x.name === 'gzip-6.gz')!;
    const res = spawnSync(oracle, [join(fx.dir, 'layer.tar'), '65536']);
    assert.equal(res.status, 2);
    assert.ok(f.bytes.length > 0);
  });
});
