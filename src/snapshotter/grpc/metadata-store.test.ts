/**
 * MetadataStore: records survive a reopen byte for byte; a rename (commit) rewrites the same file; deletes
 * are durable; a torn or tampered record file and leftover temp files are ignored (and the temp files
 * removed) without losing the valid records; new ids stay above loaded and reserved ids.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetadataStore, type SnapshotRecord } from './metadata-store.js';

function rec(id: string, name: string, extra: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return { id, name, parent: '', kind: 'active', labels: { a: 'b' }, createdAt: 1000 + Number(id), updatedAt: 2000, ...extra };
}

describe('MetadataStore', () => {
  test('persists, renames, deletes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meta-'));
    try {
      const s = await MetadataStore.open(dir);
      const id1 = s.allocateId();
      const id2 = s.allocateId();
      assert.deepEqual([id1, id2], ['1', '2']);
      const r1 = rec(id1, 'default/1/a', { remote: { imageRef: 'h/r:t', layerDigest: 'sha256:aa', manifestDigest: 'sha256:bb' } });
      await s.put(r1);
      await s.put(rec(id2, 'default/2/b', { parent: 'default/1/a' }));
      await s.put({ ...r1, name: 'sha256:chain', kind: 'committed', usage: { size: 10, inodes: 2 } });
      assert.equal(s.get('default/1/a'), undefined);
      await assert.rejects(s.put(rec('9', 'sha256:chain')), /already belongs/);
      const again = await MetadataStore.open(dir);
      assert.deepEqual(again.problems, []);
      assert.deepEqual(again.all(), s.all());
      assert.deepEqual(again.get('sha256:chain'), { ...r1, name: 'sha256:chain', kind: 'committed', usage: { size: 10, inodes: 2 } });
      assert.deepEqual(again.children('sha256:chain').map((r) => r.name), []);
      assert.deepEqual(again.children('default/1/a').map((r) => r.name), ['default/2/b']);
      await again.delete(id2);
      assert.equal(again.get('default/2/b'), undefined);
      const third = await MetadataStore.open(dir);
      assert.deepEqual(third.all().map((r) => r.name), ['sha256:chain']);
      assert.equal(third.allocateId(), '2'); // unique among loaded records...
      third.reserveThrough(7); // ...and above reserved ones (leftover snapshot dirs)
      assert.equal(third.allocateId(), '8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a torn write is ignored, valid records survive, temp files go', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meta-'));
    try {
      const s = await MetadataStore.open(dir);
      await s.put(rec('1', 'k1'));
      await s.put(rec('2', 'k2'));
      await s.put(rec('3', 'k3'));
      const whole = readFileSync(join(dir, '2.json'), 'utf8');
      // every proper prefix of a record file is rejected
      for (let cut = 0; cut < whole.length; cut += 7) {
        writeFileSync(join(dir, '2.json'), whole.slice(0, cut));
        const t = await MetadataStore.open(dir);
        assert.deepEqual(t.all().map((r) => r.name), ['k1', 'k3'], `cut at ${cut}`);
        assert.equal(t.problems.length, 1);
        assert.equal(t.problems[0]!.file, '2.json');
      }
      // a record whose content changed but still parses is rejected by its checksum
      writeFileSync(join(dir, '2.json'), whole.replace('"k2"', '"kX"'));
      const t2 = await MetadataStore.open(dir);
      assert.deepEqual(t2.problems.map((p) => p.reason), ['checksum mismatch']);
      assert.equal(t2.get('kX'), undefined);
      // a crash before rename leaves a temp file: ignored and removed; the old record stays
      writeFileSync(join(dir, '2.json'), whole);
      writeFileSync(join(dir, '3.123.0.tmp'), '{"sum":"x","rec');
      const t3 = await MetadataStore.open(dir);
      assert.deepEqual(t3.all().map((r) => r.name), ['k1', 'k2', 'k3']);
      assert.deepEqual(t3.problems, []);
      assert.deepEqual(readdirSync(dir).sort(), ['1.json', '2.json', '3.json']);
      assert.equal(t3.allocateId(), '4');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
