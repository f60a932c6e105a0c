/**
 * Go JSON oracle: builds test/oracles/gojson (a stdlib-only Go program with image-spec v1.1.1's structs)
 * and checks, for every document in a corpus, that our parse + marshal gives exactly the bytes Go's
 * json.Unmarshal + json.Marshal gives. The corpus: everything our SOCI builders emit for a multi-platform
 * image (Docker and OCI tops), hand-written tricky documents, and random documents from fast-check.
 * Skipped, with the reason, when `go` is not installed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { marshalIndex, marshalManifest, parseIndex, parseManifest } from '../src/oci/go-json.js';
import { buildSociImage } from '../src/indexer/soci/index.js';
import { buildFixtureImage } from './oracles/gojson/fixture-image.js';

type Kind = 'manifest' | 'index';
const SRC = new URL('./oracles/gojson/main.go', import.meta.url).pathname;
const enc = new TextEncoder();

function goVersion(): { minor: number } | undefined {
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  const m = r.status === 0 ? /go1\.(\d+)/.exec(r.stdout) : null;
  return m ? { minor: Number(m[1]) } : undefined;
}

const go = goVersion();
const dir = go ? mkdtempSync(join(tmpdir(), 'gojson-oracle-')) : '';
let oraclePath = '';

function buildOracle(): void {
  const env = { ...process.env, GO111MODULE: 'off', GOFLAGS: '-mod=mod', GOPROXY: 'off' };
  const r = spawnSync('go', ['build', '-o', join(dir, 'gojson'), SRC], { cwd: dir, env, encoding: 'utf8' });
  assert.equal(r.status, 0, `go build failed: ${r.stderr}`);
  oraclePath = join(dir, 'gojson');
}

/** Go's re-marshal of each document, or an Error when Go refuses it. */
function goRemarshal(docs: Array<{ kind: Kind; bytes: Uint8Array }>): Array<Uint8Array | Error> {
  const input = docs.map((d) => `${d.kind} ${Buffer.from(d.bytes).toString('base64')}\n`).join('');
  const r = spawnSync(oraclePath, [], { input, encoding: 'utf8', maxBuffer: 256 << 20 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, docs.length);
  return lines.map((l) => (l.startsWith('OK ') ? new Uint8Array(Buffer.from(l.slice(3), 'base64')) : new Error(l.slice(4))));
}

const opts = { goShortEscapes: (go?.minor ?? 22) >= 22 };

function ours(d: { kind: Kind; bytes: Uint8Array }): Uint8Array | Error {
  try {
    return d.kind === 'manifest' ? marshalManifest(parseManifest(d.bytes), opts) : marshalIndex(parseIndex(d.bytes), opts);
  } catch (e) {
    return e as Error;
  }
}

/** Compare on every document; documents we accept must match Go byte for byte. Returns the counts. */
function compare(docs: Array<{ kind: Kind; bytes: Uint8Array; name?: string }>, mustAccept: boolean) {
  const theirs = goRemarshal(docs);
  let matched = 0;
  let refused = 0;
  docs.forEach((d, i) => {
    const mine = ours(d);
    const gos = theirs[i] as Uint8Array | Error;
    const name = d.name ?? Buffer.from(d.bytes).toString('utf8').slice(0, 200);
    if (mine instanceof Error) {
      assert.ok(!mustAccept, `${name}: we refused a document: ${mine.message}`);
      refused++;
      return;
    }
    assert.ok(!(gos instanceof Error), `${name}: Go refused a document we accept: ${gos instanceof Error ? gos.message : ''}`);
    assert.equal(Buffer.from(mine).toString('utf8'), Buffer.from(gos).toString('utf8'), name);
    assert.ok(Buffer.from(mine).equals(Buffer.from(gos)), `${name}: bytes differ`);
    matched++;
  });
  return { matched, refused };
}

const D = (c: string) => `sha256:${c.repeat(64)}`;
const cfg = `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${D('a')}","size":7}`;
const tricky: Array<[Kind, string]> = [
  ['manifest', `{"schemaVersion":2,"config":${cfg},"layers":[]}`],
  ['manifest', `{"schemaVersion":2,"config":${cfg},"layers":[],"annotations":{}}`],
  ['manifest', `{ "schemaVersion" : 2 , "config":${cfg},"layers":[],"annotations":{"b":"<html> & \\u2028 \\u2029 \\u0000 \\u001f \\u007f \\b\\f\\n\\r\\t \\/ \\"q\\" \\\\"}}`],
  ['manifest', `{"schemaVersion":2,"config":${cfg},"layers":[],"annotations":{"\u00e9":"1","\uff61":"2","\u{1f600}":"3","Z":"4","a":"5","":"6"}}`],
  ['manifest', `{"schemaVersion":2,"config":${cfg},"layers":[],"annotations":{"lone":"\\ud800 \\udc00 \\ud83d\\ude00 \\ud800\\u0041","raw":"\u00e9\u{1f600}\ufffd"}}`],
  ['manifest', `{"SchemaVersion":2,"MEDIATYPE":"application/vnd.oci.image.manifest.v1+json","CONFIG":${cfg},"Layers":[{"MediaType":"l","Digest":"${D('b')}","SIZE":1,"URLs":["http://x/<y>"]}]}`],
  ['manifest', `{"schemaVersion":2,"artifactType":"application/x","config":${cfg},"layers":[{"mediaType":"l","digest":"${D('b')}","size":1,"data":"e31=","urls":[],"annotations":{},"platform":null,"artifactType":""}],"subject":{"mediaType":"m","digest":"${D('c')}","size":3,"extra":[1,{"a":null}]},"annotations":{"k":"v"},"unknown":true}`],
  ['manifest', `{"schemaVersion":2,"config":${cfg},"layers":[{"mediaType":"l","digest":"${D('b')}","size":0,"data":"AAEC\\r\\nAw=="}]}`],
  ['index', `{"schemaVersion":2,"manifests":[]}`],
  ['index', `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"${D('d')}","size":9,"platform":{"architecture":"arm64","os":"linux","variant":"v8","features":["sse4"]}}]}`],
  ['index', `{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"${D('d')}","size":9,"platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.5576","os.features":["win32k"],"variant":""}},{"mediaType":"m","digest":"${D('e')}","size":10,"platform":{"architecture":"","os":""}}],"annotations":{"org.opencontainers.image.ref.name":"v1 <&>"},"subject":{"mediaType":"m","digest":"${D('f')}","size":1}}`],
];

const stringArb = fc.oneof(
  fc.string({ unit: 'binary' }),
  fc.string({ unit: fc.constantFrom('<', '>', '&', '\u2028', '\u2029', '\b', '\f', '\u0001', '"', '\\', 'a', '\ud800', '\udc00', '\u{1f600}', '\u00e9', '\uffff') }),
);
const digestArb = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);
const annotationsArb = fc.option(fc.dictionary(stringArb, stringArb, { maxKeys: 6 }), { nil: undefined });
const platformArb = fc.record(
  { architecture: stringArb, os: stringArb, 'os.version': stringArb, 'os.features': fc.array(stringArb, { maxLength: 3 }), variant: stringArb },
  { requiredKeys: ['architecture', 'os'] },
);
const descriptorArb = fc.record(
  {
    mediaType: stringArb.filter((s) => s.length > 0),
    digest: digestArb,
    size: fc.maxSafeNat(),
    urls: fc.array(stringArb, { maxLength: 3 }),
    annotations: annotationsArb,
    data: fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b).toString('base64')),
    platform: platformArb,
    artifactType: stringArb,
  },
  { requiredKeys: ['mediaType', 'digest', 'size'] },
);
const headArb = { schemaVersion: fc.constant(2), mediaType: stringArb, artifactType: stringArb, subject: descriptorArb, annotations: annotationsArb };
const manifestArb = fc.record({ ...headArb, config: descriptorArb, layers: fc.array(descriptorArb, { maxLength: 4 }) }, { requiredKeys: ['schemaVersion', 'config', 'layers'] });
const indexArb = fc.record({ ...headArb, manifests: fc.array(descriptorArb, { maxLength: 4 }) }, { requiredKeys: ['schemaVersion', 'manifests'] });
const isTypeClash = (kind: Kind, mt: unknown) => typeof mt === 'string' && (kind === 'manifest' ? mt.includes('index') || mt.includes('list') : mt.includes('manifest.v'));

describe('Go JSON oracle', { skip: go ? false : 'go is not installed: cannot build the Go JSON oracle' }, () => {
  test('build the oracle', () => buildOracle());

  test('every document our SOCI builders emit is exactly what Go re-marshals', () => {
    const docs: Array<{ kind: Kind; bytes: Uint8Array; name: string }> = [];
    for (const top of ['docker', 'oci'] as const) {
      for (const spanSizeAnnotation of [true, false]) {
        const fx = buildFixtureImage({ top, soci: { spanSizeAnnotation, xattrOptimization: true } });
        docs.push({ kind: 'index', bytes: fx.top.bytes, name: `${top} original top` });
        const img = buildSociImage(fx.top, fx.platforms, opts);
        docs.push({ kind: 'index', bytes: img.index.bytes, name: `${top} SOCI image index` });
        for (const m of img.manifests) docs.push({ kind: 'manifest', bytes: m.bytes, name: `${top} manifest ${m.digest}` });
        for (const s of img.sociIndexes) docs.push({ kind: 'manifest', bytes: s.bytes, name: `${top} SOCI index ${s.digest}` });
        for (const p of fx.platforms) docs.push({ kind: 'manifest', bytes: p.manifestBytes, name: `${top} original manifest` });
      }
    }
    const theirs = goRemarshal(docs);
    docs.forEach((d, i) => assert.ok(Buffer.from(d.bytes).equals(Buffer.from(theirs[i] as Uint8Array)), `${d.name}: Go re-marshal changes it`));
    assert.deepEqual(compare(docs, true), { matched: docs.length, refused: 0 });
  });

  test('hand-written tricky documents', () => {
    const r = compare(tricky.map(([kind, s]) => ({ kind, bytes: enc.encode(s) })), true);
    assert.equal(r.matched, tricky.length);
  });

  test('random documents (fast-check): JSON.stringify output, re-marshalled by both', () => {
    const docs: Array<{ kind: Kind; bytes: Uint8Array }> = [];
    for (const m of fc.sample(manifestArb, { numRuns: 300, seed: 42 })) docs.push({ kind: 'manifest', bytes: enc.encode(JSON.stringify(m)) });
    for (const i of fc.sample(indexArb, { numRuns: 300, seed: 43 })) docs.push({ kind: 'index', bytes: enc.encode(JSON.stringify(i)) });
    const usable = docs.filter((d) => !isTypeClash(d.kind, JSON.parse(Buffer.from(d.bytes).toString('utf8')).mediaType));
    const r = compare(usable, true);
    assert.equal(r.matched, usable.length);
    assert.ok(r.matched > 500, `only ${r.matched} random documents compared`);
  });

  test('our own marshal output is a fixed point of Go (random models)', () => {
    const models = fc.sample(manifestArb, { numRuns: 200, seed: 7 }).filter((m) => !isTypeClash('manifest', m.mediaType));
    const docs = models.map((m) => ({ kind: 'manifest' as const, bytes: marshalManifest(m, opts) }));
    const theirs = goRemarshal(docs);
    docs.forEach((d, i) => assert.ok(Buffer.from(d.bytes).equals(Buffer.from(theirs[i] as Uint8Array)), Buffer.from(d.bytes).toString('utf8')));
  });

  test('clean up', () => rmSync(dir, { recursive: true, force: true }));
});
