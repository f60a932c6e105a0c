/**
 * Lock takeover across real processes: two proxies (`dist/cli.js serve --redis`, `--lock-ttl 3`) share a
 * redis-server in front of one docker-registry. Proxy A reaches the registry through a throttling TCP
 * relay (about 1 MB/s, registry→proxy), so its stream of a 10 MiB incompressible layer takes seconds;
 * proxy B talks to the registry directly. A first pull on A takes the job and layer locks
 * (`soci:lock:*`, read with raw RESP); the same image requested from B must wait, not index; A is then
 * SIGKILLed mid-stream, and B finishes the job once A's locks expire. The registry's access log is the
 * witness: the layer was read completely exactly once (by B) and A's aborted read is logged short; B's
 * answer is a SOCI-enabled index whose zTOC restores every byte of the layer's tar.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { buildImage, pushImage, randomBytes, redisCommand, startProxy, startRedis, startRegistry, tempDir, textBytes, type BuiltImage, type Proxy, type Redis, type Registry } from './harness/index.js';
import { verifySociChain } from '../src/indexer/soci/index.js';
import { ZtocReader } from '../src/indexer/reader.js';
import { parseIndex, parseManifest } from '../src/oci/go-json.js';
import { Annotation, MediaType } from '../src/oci/media-types.js';

const HAVE_DIST = existsSync(new URL('../dist/cli.js', import.meta.url));
const ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');
const ARGS = ['--min-layer-size', '65536', '--span-size', '262144', '--index-mode', 'wait', '--log-level', 'warn', '--lock-ttl', '3'];
const RATE = 1024 * 1024; // bytes per second, registry → proxy A
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A TCP relay to `port` that forwards the downstream direction at about `rate` bytes/s. */
async function throttlingRelay(port: number, rate: number): Promise<{ url: string; downBytes(): number; close(): Promise<void> }> {
  let down = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const up = connect({ host: '127.0.0.1', port });
    sockets.add(client).add(up);
    client.pipe(up);
    up.on('data', (chunk: Buffer) => {
      up.pause();
      client.write(chunk);
      down += chunk.length;
      setTimeout(() => up.resume(), (chunk.length / rate) * 1000);
    });
    up.on('end', () => client.end());
    const drop = (): void => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('close', drop).on('error', drop);
    up.on('close', drop).on('error', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    downBytes: () => down,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Keys matching `pattern` with their values, through one Lua call so the raw RESP reply is a bulk string. */
async function redisKeys(port: number, pattern: string): Promise<Map<string, string>> {
  const script = `local out = {} for _, k in ipairs(redis.call('keys', ARGV[1])) do out[#out + 1] = k .. '=' .. (redis.call('get', k) or '') end table.sort(out) return table.concat(out, '\\n')`;
  const r = await redisCommand(port, ['EVAL', script, '0', pattern]);
  const m = new Map<string, string>();
  for (const line of String(r ?? '').split('\n').filter(Boolean)) {
    const i = line.lastIndexOf('=');
    m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

async function metric(proxy: Proxy, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.indexOf('}'));
    const got = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.slice(line.indexOf('}') + 1));
  }
  return 0;
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('fleet takeover: a replica dies while indexing', { skip: HAVE_DIST ? false : 'run `npm run build` first' }, () => {
  let registry: Registry;
  let redis: Redis;
  let relay: Awaited<ReturnType<typeof throttlingRelay>>;
  let image: BuiltImage;
  const proxies: Proxy[] = [];
  const work = tempDir('fleet-takeover');

  before(async () => {
    registry = await startRegistry();
    redis = await startRedis();
    const files: Record<string, Uint8Array> = {};
    for (let i = 0; i < 16; i++) files[`data/random-${i}.bin`] = randomBytes(640 * 1024, 300 + i);
    for (let i = 0; i < 8; i++) files[`src/text-${i}.txt`] = textBytes(32 * 1024, 400 + i);
    image = await buildImage({ tag: 'takeover', layers: [{ files }], config: { cmd: ['/bin/sh'] } });
    await pushImage(image, { registry: registry.url, repo: 'fleet/takeover', tag: 'latest' });
    relay = await throttlingRelay(Number(new URL(registry.url).port), RATE);
  });
  after(async () => {
    for (const p of proxies) await p.stop();
    await relay?.close();
    await redis?.stop();
    await registry?.stop();
    work.remove();
  });

  test('B waits while A holds the lock, then takes over after A is killed; the layer is read in full once', async (t) => {
    const layer = image.layers[0]!;
    const size = layer.blob.length;
    // Loopback socket buffers let the registry write a few MiB ahead of what the relay forwards, so the layer
    // must be well past that for A's aborted read to be logged short.
    assert.ok(size > 10 * 1024 * 1024, `the layer (${size} B) takes about 10 s at ${RATE} B/s`);
    const start = (name: string, upstream: string): Promise<Proxy> =>
      startProxy({ upstream, dir: join(work.path, name), extraArgs: [...ARGS, '--cache-dir', join(work.path, name, 'cache'), '--redis', redis.url] });
    const a = await start('a', relay.url);
    const b = await start('b', registry.url);
    proxies.push(a, b);

    const pullA = fetch(`${a.url}/v2/fleet/takeover/manifests/latest`, { headers: { accept: ACCEPT } }).then(
      (r) => r.status,
      (err: unknown) => err,
    );
    // A holds the job lock and the layer lock, and is streaming the layer through the relay.
    const locksA = await until('A to hold the layer lock', 20_000, async () => {
      const m = await redisKeys(redis.port, 'soci:lock:*');
      return [...m.keys()].some((k) => k.startsWith(`soci:lock:ztoc:${layer.descriptor.digest}`)) && relay.downBytes() > 256 * 1024 ? m : undefined;
    });
    assert.equal(locksA.size, 2, `one job lock and one layer lock: ${[...locksA.keys()].join(', ')}`);

    const pullB = fetch(`${b.url}/v2/fleet/takeover/manifests/latest`, { headers: { accept: ACCEPT } });
    await sleep(1500);
    // B waits: it has not started a layer, and the locks still carry A's tokens (A keeps renewing them).
    assert.ok((await metric(b, 'soci_proxy_cache_tier_ops_total', { tier: 'flight', op: 'flight' })) >= 1, 'B reached the fleet lock (and, A holding it, waits)');
    assert.equal(await metric(b, 'soci_proxy_cache_lookups_total', { kind: 'layer', result: 'miss' }), 0, 'B did not start indexing');
    assert.deepEqual(await redisKeys(redis.port, 'soci:lock:*'), locksA, "A's locks are intact");
    await registry.settle(50);
    assert.deepEqual(registry.requests().filter((e) => e.method === 'GET' && e.blob === layer.descriptor.digest), [], 'no layer read has finished yet');
    const relayedBeforeKill = relay.downBytes();
    assert.ok(relayedBeforeKill < size, `A is mid-stream (${relayedBeforeKill} of ${size} bytes relayed)`);

    await a.kill();
    const killedAt = Date.now();
    assert.ok((await pullA) instanceof Error, "A's client lost its connection");

    const r = await pullB;
    const body = new Uint8Array(await r.arrayBuffer());
    const tookOverAfterMs = Date.now() - killedAt;
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), MediaType.ociIndex);
    assert.equal(r.headers.get('docker-content-digest'), sha(body));
    assert.ok(tookOverAfterMs < 15_000, `B finished ${tookOverAfterMs} ms after A died (lock TTL 3 s)`);
    assert.equal(await metric(b, 'soci_proxy_cache_lookups_total', { kind: 'layer', result: 'miss' }), 1, 'B indexed the layer');
    assert.equal(await metric(b, 'soci_proxy_layers_indexed_total', { status: 'indexed' }), 1);
    assert.deepEqual(await redisKeys(redis.port, 'soci:lock:*'), new Map(), 'B released every lock');

    // The registry's log: one complete read of the layer (B's), and A's aborted read shorter than the blob.
    await registry.settle();
    const reads = registry.requests().filter((e) => e.method === 'GET' && e.blob === layer.descriptor.digest);
    const complete = reads.filter((e) => e.status === 200 && e.bytes === size);
    assert.equal(complete.length, 1, `exactly one complete read: ${JSON.stringify(reads)}`);
    assert.equal(reads.length, 2, `A's aborted read is logged beside it: ${JSON.stringify(reads)}`);
    const partial = reads.find((x) => x !== complete[0])!;
    assert.ok(partial.bytes >= relayedBeforeKill && partial.bytes < size, `A's aborted read is short (${partial.bytes} of ${size} bytes)`);
    t.diagnostic(`A relayed ${relayedBeforeKill} B before the kill; registry logged ${partial.bytes} B for A; B answered ${tookOverAfterMs} ms after the kill`);

    // B's answer is a valid SOCI-enabled index, and its zTOC restores every byte of the layer's tar.
    const fetchByDigest = async (digest: string): Promise<Uint8Array | undefined> => {
      const m = await fetch(`${b.url}/v2/fleet/takeover/manifests/${digest}`, { headers: { accept: ACCEPT } });
      if (m.status === 200) return new Uint8Array(await m.arrayBuffer());
      await m.arrayBuffer();
      const blob = await fetch(`${b.url}/v2/fleet/takeover/blobs/${digest}`);
      return blob.status === 200 ? new Uint8Array(await blob.arrayBuffer()) : undefined;
    };
    const platforms = await verifySociChain(body, fetchByDigest);
    assert.equal(platforms.length, 1);
    const sociDesc = parseIndex(body).manifests.find((d) => d.artifactType === MediaType.sociIndexV2);
    assert.ok(sociDesc, 'the index lists a SOCI index v2');
    const soci = parseManifest((await fetchByDigest(sociDesc.digest))!);
    assert.equal(soci.config.mediaType, MediaType.sociIndexV2);
    assert.equal(soci.layers.length, 1);
    assert.equal(soci.layers[0]!.annotations?.[Annotation.imageLayerDigest], layer.descriptor.digest);
    const ztoc = (await fetchByDigest(soci.layers[0]!.digest))!;
    assert.equal(sha(ztoc), soci.layers[0]!.digest);
    const reader = ZtocReader.fromBytes(ztoc);
    const src = { read: async (s: number, e: number): Promise<Uint8Array> => layer.blob.subarray(s, e) };
    let covered = 0;
    for (const span of reader.spans) {
      const data = await reader.readSpan(src, span.id);
      assert.ok(Buffer.from(data).equals(layer.tar.subarray(span.outStart, span.outEnd)), `span ${span.id}`);
      covered += data.length;
    }
    assert.equal(covered, reader.ztoc.uncompressedArchiveSize, 'the spans cover the whole tar stream');
    const regs = reader.ztoc.toc.filter((e) => e.type === 'reg');
    assert.equal(regs.length, 24);
    for (const e of regs) {
      const content = await reader.readFile(src, e);
      assert.ok(Buffer.from(content).equals(layer.tar.subarray(e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize)), e.name);
    }
  });
});
