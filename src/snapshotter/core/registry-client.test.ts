import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from './registry-client.js';

const sha = (b: Uint8Array | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A registry that wants a Bearer token (from its own /token, for Basic u:p), fails the first blob GET with 503. */
async function registry(): Promise<{ host: string; log: string[]; close(): Promise<void> }> {
  const manifest = Buffer.from('{"schemaVersion":2}');
  const blob = Buffer.alloc(300_000, 7);
  const log: string[] = [];
  let blobGets = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    log.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url?.startsWith('/token')) {
      const ok = req.headers.authorization === `Basic ${Buffer.from('u:p').toString('base64')}` && req.url.includes('scope=repository%3Ar%2Fx%3Apull');
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end(ok ? '{"token":"T"}' : '{}');
      return;
    }
    if (req.headers.authorization !== 'Bearer T') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="reg",scope="repository:r/x:pull"` }).end();
      return;
    }
    if (req.url === '/v2/r/x/manifests/latest') {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': sha(manifest) }).end(manifest);
    } else if (req.url === `/v2/r/x/blobs/${sha(blob)}`) {
      if (blobGets++ === 0) res.writeHead(503).end();
      else res.writeHead(200).end(blob);
    } else if (req.url === `/v2/r/x/blobs/${sha('other')}`) {
      res.writeHead(200).end(blob); // the wrong bytes for that digest
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, log, close: () => new Promise((r) => server.close(() => r())) };
}

test('node:http transport: Bearer token flow, retry after 503, digest and size checks, range-source spec', async () => {
  const reg = await registry();
  const client = new RegistryClient({ plainHttp: true, credentials: { username: 'u', password: 'p' }, retries: 2, timeoutMs: 5000 });
  const dir = mkdtempSync(join(tmpdir(), 'rc-test-'));
  try {
    const ref = { host: reg.host, repo: 'r/x', reference: 'latest' };
    const m = await client.getManifest(ref, ['application/vnd.oci.image.manifest.v1+json']);
    assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(Buffer.from(m.bytes).toString(), '{"schemaVersion":2}');
    assert.equal(m.digest, sha('{"schemaVersion":2}'));
    assert.deepEqual(reg.log.slice(0, 3).map((l) => l.split(' ')[2]), [`Basic`, 'Basic', 'Bearer'], 'challenge, token, retried request');
    const blob = Buffer.alloc(300_000, 7);
    const got = await client.getBlob(ref, sha(blob), blob.length); // first GET is a 503: retried
    assert.deepEqual(Buffer.from(got), blob);
    await assert.rejects(client.getBlob(ref, sha(blob), blob.length - 1), (e: { code?: string }) => e.code === 'SIZE_INVALID');
    await assert.rejects(client.getBlob(ref, sha('other'), blob.length), (e: { code?: string }) => e.code === 'DIGEST_INVALID');
    await assert.rejects(client.getBlob(ref, sha('missing')), (e: { code?: string }) => e.code === 'BLOB_UNKNOWN');
    const file = join(dir, 'b');
    assert.equal(await client.downloadBlob(ref, sha(blob), file), blob.length);
    assert.deepEqual(readFileSync(file), blob);
    const spec = client.rangeSourceSpec(ref, sha(blob), { timeoutMs: 1234 });
    assert.equal(spec.url, `http://${reg.host}/v2/r/x/blobs/${sha(blob)}`);
    assert.deepEqual(spec.options.headers, { authorization: 'Bearer T' });
    assert.equal(spec.options.timeoutMs, 1234);
    // An unreachable registry is UNAVAILABLE after the retries, not a hang.
    await reg.close();
    await assert.rejects(client.getManifest(ref, ['x']), (e: { code?: string }) => e.code === 'UNAVAILABLE');
  } finally {
    client.close();
    rmSync(dir, { recursive: true, force: true });
    await reg.close().catch(() => undefined);
  }
});
