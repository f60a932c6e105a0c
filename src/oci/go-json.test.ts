import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compareUtf8, isGoCanonicalManifest, marshalDescriptor, marshalIndex, marshalManifest, parseIndex, parseManifest } from './go-json.js';
import type { Manifest } from './types.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;

describe('marshal', () => {
  test('SOCI index template of soci-format.md §1.3, byte for byte', () => {
    const m: Manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.amazon.soci.index.v2+json', digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', size: 2 },
      layers: [
        {
          mediaType: 'application/octet-stream',
          digest: D1,
          size: 1234,
          annotations: {
            'com.amazon.soci.span-size': '4194304',
            'com.amazon.soci.image-layer-mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip',
            'com.amazon.soci.image-layer-digest': D2,
          },
        },
      ],
      annotations: { 'com.amazon.soci.build-tool-identifier': 'AWS SOCI CLI v0.2' },
    };
    assert.equal(
      text(marshalManifest(m)),
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.amazon.soci.index.v2+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/octet-stream","digest":"${D1}","size":1234,"annotations":{"com.amazon.soci.image-layer-digest":"${D2}","com.amazon.soci.image-layer-mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","com.amazon.soci.span-size":"4194304"}}],"annotations":{"com.amazon.soci.build-tool-identifier":"AWS SOCI CLI v0.2"}}`,
    );
  });

  test('struct order and omitempty of Descriptor and Platform', () => {
    const full = marshalDescriptor({
      artifactType: 'x/y',
      platform: { variant: 'v8', 'os.features': ['f'], 'os.version': '10', os: 'linux', architecture: 'arm64' },
      data: 'e30=',
      annotations: { b: '2', a: '1' },
      urls: ['http://u'],
      size: 7,
      digest: D1,
      mediaType: 'm',
    });
    assert.equal(
      text(full),
      `{"mediaType":"m","digest":"${D1}","size":7,"urls":["http://u"],"annotations":{"a":"1","b":"2"},"data":"e30=","platform":{"architecture":"arm64","os":"linux","os.version":"10","os.features":["f"],"variant":"v8"},"artifactType":"x/y"}`,
    );
    const empty = marshalDescriptor({ mediaType: '', digest: '', size: 0, urls: [], annotations: {}, data: '', artifactType: '', platform: { architecture: '', os: '', 'os.features': [] } });
    assert.equal(text(empty), '{"mediaType":"","digest":"","size":0,"platform":{"architecture":"","os":""}}');
  });

  test('layers/manifests: [] for an empty array, null when absent (Go nil slice)', () => {
    const cfg = { mediaType: 'c', digest: D1, size: 1 };
    assert.equal(text(marshalManifest({ schemaVersion: 2, config: cfg, layers: [] })), `{"schemaVersion":2,"config":{"mediaType":"c","digest":"${D1}","size":1},"layers":[]}`);
    assert.equal(text(marshalManifest({ schemaVersion: 2, config: cfg } as unknown as Manifest)).endsWith('"layers":null}'), true);
    assert.equal(text(marshalIndex({ schemaVersion: 2, manifests: [], annotations: {} })), '{"schemaVersion":2,"manifests":[]}');
    assert.equal(
      text(marshalIndex({ schemaVersion: 2, mediaType: 'i', artifactType: 'a', manifests: [], subject: cfg, annotations: { k: 'v' } })),
      `{"schemaVersion":2,"mediaType":"i","artifactType":"a","manifests":[],"subject":{"mediaType":"c","digest":"${D1}","size":1},"annotations":{"k":"v"}}`,
    );
  });

  test("Go's string escaping", () => {
    const d = (s: string, short = true) => text(marshalDescriptor({ mediaType: s, digest: '', size: 0 }, { goShortEscapes: short })).slice(13, -22);
    assert.equal(d('<a&b>'), '"\\u003ca\\u0026b\\u003e"');
    assert.equal(d('"\\/'), '"\\"\\\\/"');
    assert.equal(d('\n\r\t\u0000\u001f\u007f'), '"\\n\\r\\t\\u0000\\u001f\u007f"');
    assert.equal(d('\b\f'), '"\\b\\f"');
    assert.equal(d('\b\f', false), '"\\u0008\\u000c"');
    assert.equal(d('\u2028\u2029\u00e9\u{1f600}'), '"\\u2028\\u2029\u00e9\u{1f600}"');
    assert.equal(d('x\ud800y\udc00'), '"x\ufffdy\ufffd"');
  });

  test('map keys in UTF-8 byte order, not UTF-16 order', () => {
    const keys = ['\uff61', '\u{1f600}', 'a', 'B', '\u00e9', ''];
    const ann = Object.fromEntries(keys.map((k) => [k, '']));
    const out = text(marshalDescriptor({ mediaType: 'm', digest: 'd', size: 0, annotations: ann }));
    const got = Object.keys(JSON.parse(out).annotations as object);
    const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual(got, expected);
    assert.ok(compareUtf8('\uff61', '\u{1f600}') < 0);
    assert.ok('\uff61' > '\u{1f600}'); // UTF-16 order disagrees: that is the point
  });

  test('data is written as canonical padded base64, refused when not base64', () => {
    const out = text(marshalDescriptor({ mediaType: 'm', digest: 'd', size: 0, data: 'e31=' }));
    assert.match(out, /"data":"e30="/);
    assert.throws(() => marshalDescriptor({ mediaType: 'm', digest: 'd', size: 0, data: 'e30' }), { code: 'MANIFEST_INVALID' });
  });

  test('sizes must be safe integers', () => {
    assert.throws(() => marshalDescriptor({ mediaType: 'm', digest: 'd', size: 1.5 }), { code: 'MANIFEST_INVALID' });
    assert.throws(() => marshalDescriptor({ mediaType: 'm', digest: 'd', size: 2 ** 53 }), { code: 'MANIFEST_INVALID' });
  });
});

describe('parse', () => {
  const good = `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"c","digest":"${D1}","size":3},"layers":[{"mediaType":"l","digest":"${D2}","size":5,"extra":1}],"unknown":{"x":[1,2]}}`;

  test('decodes like Go: unknown fields dropped, nulls absent, empty maps dropped', () => {
    const m = parseManifest(bytes(good));
    assert.deepEqual(m, {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'c', digest: D1, size: 3 },
      layers: [{ mediaType: 'l', digest: D2, size: 5 }],
    });
    const withNulls = good.replace('"layers"', '"annotations":{},"subject":null,"artifactType":null,"layers"');
    assert.deepEqual(parseManifest(bytes(withNulls)), m);
    assert.equal(isGoCanonicalManifest(bytes(good)), false);
    assert.equal(isGoCanonicalManifest(marshalManifest(m)), true);
  });

  test('field names match case-insensitively, as in Go', () => {
    const m = parseManifest(bytes(good.replace('"mediaType":"application', '"MEDIATYPE":"application')));
    assert.equal(m.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.throws(() => parseManifest(bytes(good.replace('"layers"', '"Config":{},"layers"'))), /given twice/);
  });

  test('annotation key "__proto__" stays an ordinary key', () => {
    const m = parseManifest(bytes(good.replace('"layers"', '"annotations":{"__proto__":"x"},"layers"')));
    assert.equal(Object.getPrototypeOf(m.annotations), Object.prototype);
    assert.deepEqual(Object.keys(m.annotations ?? {}), ['__proto__']);
    assert.match(text(marshalManifest(m)), /"annotations":\{"__proto__":"x"\}/);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['schemaVersion 1', good.replace('"schemaVersion":2', '"schemaVersion":1'), /schemaVersion is 1/],
    ['schemaVersion as float', good.replace('"schemaVersion":2', '"schemaVersion":2.0'), /integer/],
    ['missing config', good.replace(/"config":\{[^}]*\},/, ''), /config: required/],
    ['layers null', good.replace(/"layers":\[.*\],"unknown"/, '"layers":null,"unknown"'), /layers: required/],
    ['bad digest', good.replace(D2, 'sha256:XYZ'), /layers\[0\]\.digest: invalid digest/],
    ['negative size', good.replace('"size":5', '"size":-5'), /non-negative/],
    ['huge size', good.replace('"size":5', '"size":9007199254740993'), /safe integer/],
    ['size as string', good.replace('"size":5', '"size":"5"'), /integer/],
    ['empty mediaType', good.replace('"mediaType":"l"', '"mediaType":""'), /must not be empty/],
    ['annotation value not a string', good.replace('"layers"', '"annotations":{"a":1},"layers"'), /expected a string/],
    ['duplicate key', good.replace('"layers"', '"schemaVersion":2,"layers"'), /duplicate key/],
    ['trailing data', `${good} x`, /trailing data/],
    ['raw control character', good.replace('"mediaType":"l"', '"mediaType":"l\u0001"'), /control character/],
    ['index media type', good.replace('application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.index.v1+json'), /is an index/],
    ['bad base64 data', good.replace('"size":5', '"size":5,"data":"abc"'), /base64/],
  ];
  for (const [name, doc, re] of bad) {
    test(`rejects: ${name}`, () => assert.throws(() => parseManifest(bytes(doc)), (e: Error & { code?: string }) => e.code === 'MANIFEST_INVALID' && re.test(e.message)));
  }

  test('rejects invalid UTF-8, a BOM, oversize documents and too many descriptors', () => {
    const b = bytes(good);
    const broken = new Uint8Array([...b.slice(0, 20), 0xff, ...b.slice(20)]);
    assert.throws(() => parseManifest(broken), /UTF-8/);
    assert.throws(() => parseManifest(new Uint8Array([0xef, 0xbb, 0xbf, ...b])), { code: 'MANIFEST_INVALID' });
    assert.throws(() => parseManifest(b, { maxBytes: 10 }), /more than 10/);
    assert.throws(() => parseManifest(b, { maxDescriptors: 0 }), /more than 0 entries/);
    const deep = `${'['.repeat(100)}${']'.repeat(100)}`;
    assert.throws(() => parseManifest(bytes(deep)), /too deep/);
  });

  test('parseIndex: manifest list with Docker platform fields', () => {
    const list = `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"${D1}","size":9,"platform":{"architecture":"arm64","os":"linux","variant":"v8","features":["x"]}}]}`;
    const i = parseIndex(bytes(list));
    assert.deepEqual(i.manifests[0]?.platform, { architecture: 'arm64', os: 'linux', variant: 'v8' });
    assert.throws(() => parseIndex(bytes(list.replace('"architecture":"arm64",', ''))), /architecture: required/);
    assert.throws(() => parseIndex(bytes(good)), /is a manifest/);
    assert.throws(() => parseIndex(bytes('{"schemaVersion":2,"manifests":{}}')), { code: 'MANIFEST_INVALID' });
  });

  test('escaped lone surrogates become U+FFFD, pairs stay', () => {
    const m = parseManifest(bytes(good.replace('"layers"', '"annotations":{"k":"\\ud800\\u0041\\ud83d\\ude00"},"layers"')));
    assert.equal(m.annotations?.k, '\ufffdA\u{1f600}');
  });
});
