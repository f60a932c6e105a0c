import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { normalizeUpstream } from './config.js';
import { UpstreamClient } from './client.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A registry stand-in that answers manifest HEADs and counts TCP connections and requests. */
describe('upstream HEAD transport', () => {
  let server: http.Server;
  let url: string;
  let connections = 0;
  let heads = 0;
  let stall = false;
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.method === 'HEAD') heads++;
      if (stall) return; // never answers: the headers timeout must fire
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': DIGEST, 'content-length': '1234' });
      res.end();
    });
    server.on('connection', () => connections++);
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));

  test('sequential HEADs reuse one keep-alive connection and report the headers', async () => {
    const client = new UpstreamClient(normalizeUpstream({ name: 'up', url }));
    try {
      const before = connections;
      for (let i = 0; i < 20; i++) {
        const m = await client.getManifest('library/x', 'latest', { method: 'HEAD' });
        assert.equal(m.digest, DIGEST);
        assert.equal(m.size, 1234);
        assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
      }
      assert.equal(heads >= 20, true);
      assert.equal(connections - before, 1, 'every HEAD after the first rode the same connection');
    } finally {
      await client.close();
    }
  });

  test('a HEAD whose headers never come fails with UNAVAILABLE after the headers timeout, retries included', async () => {
    const up = normalizeUpstream({ name: 'up', url, timeouts: { headersMs: 150 }, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 } });
    const client = new UpstreamClient(up);
    stall = true;
    const before = heads;
    const t0 = Date.now();
    try {
      await assert.rejects(client.getManifest('library/x', 'latest', { method: 'HEAD' }), (e: Error & { code?: string }) => e.code === 'UNAVAILABLE');
      assert.equal(heads - before, 2, 'the timeout is retryable');
      assert.ok(Date.now() - t0 < 5_000);
    } finally {
      stall = false;
      await client.close();
    }
  });
});
