import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { OffThreadHasher } from './off-thread-hasher.js';

describe('OffThreadHasher', () => {
  const hasher = new OffThreadHasher({ maxInFlight: 2 });
  after(() => hasher.close());

  test('digests equal node:crypto for concurrent jobs of odd chunk sizes, with backpressure', async () => {
    const blobs = [randomBytes(0), randomBytes(1), randomBytes((1 << 20) - 1), randomBytes(5 * (1 << 20) + 12345)];
    const results = await Promise.all(
      blobs.map(async (b, i) => {
        const job = hasher.start(i === 1 ? 'sha512' : 'sha256');
        for (let p = 0, n = 1; p < b.length; p += n, n = (n * 7 + 65_519) % 300_000 || 1) {
          if (!job.update(b.subarray(p, p + n))) await job.drained();
        }
        return job.digest();
      }),
    );
    blobs.forEach((b, i) => {
      const alg = i === 1 ? 'sha512' : 'sha256';
      assert.equal(results[i], `${alg}:${createHash(alg).update(b).digest('hex')}`);
    });
  });

  test('a job whose worker died rejects instead of resolving', async () => {
    const h = new OffThreadHasher();
    const job = h.start('sha256');
    job.update(randomBytes(3 << 20));
    await h.close();
    await assert.rejects(job.digest());
  });
});
