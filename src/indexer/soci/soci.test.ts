import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sha256 } from '../../oci/digest.js';
import { marshalIndex, marshalManifest, parseIndex, parseManifest } from '../../oci/go-json.js';
import { Annotation, EMPTY_JSON_DIGEST, MediaType } from '../../oci/media-types.js';
import type { Descriptor } from '../../oci/types.js';
import { buildFixtureImage } from '../../../test/oracles/gojson/fixture-image.js';
import { buildSociImage, buildSociIndex, shouldDisableXattrs, verifySociChain } from './index.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
const D = (s: string) => sha256(s);

describe('buildSociIndex', () => {
  const layers: Descriptor[] = [
    { mediaType: MediaType.ociLayerGzip, digest: D('l0'), size: 100 },
    { mediaType: MediaType.dockerLayerTar, digest: D('l1'), size: 200 },
    { mediaType: MediaType.ociLayerGzip, digest: D('l2'), size: 300 },
  ];
  const ztocs = new Map([
    [D('l2'), { digest: D('z2'), size: 22, needsXattrs: false }],
    [D('l0'), { digest: D('z0'), size: 20, needsXattrs: true }],
  ]);

  test('v2 bytes exactly as soci v0.12+ writes them (§1.3 template), layer order kept, unindexed layer skipped', () => {
    const r = buildSociIndex(layers, ztocs);
    const z = (n: string, l: string) =>
      `{"mediaType":"application/octet-stream","digest":"${D(n)}","size":${n === 'z0' ? 20 : 22},"annotations":{"com.amazon.soci.image-layer-digest":"${D(l)}","com.amazon.soci.image-layer-mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","com.amazon.soci.span-size":"4194304"}}`;
    assert.equal(
      text(r.bytes),
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.amazon.soci.index.v2+json","digest":"${EMPTY_JSON_DIGEST}","size":2},"layers":[${z('z0', 'l0')},${z('z2', 'l2')}],"annotations":{"com.amazon.soci.build-tool-identifier":"AWS SOCI CLI v0.2"}}`,
    );
    assert.equal(r.digest, sha256(r.bytes));
    assert.equal(r.size, r.bytes.length);
    assert.deepEqual(parseManifest(r.bytes), r.manifest);
  });

  test('options: no span-size (v0.10/v0.11 form), xattr optimization, identifier, span size', () => {
    const r = buildSociIndex(layers, ztocs, { spanSizeAnnotation: false, xattrOptimization: true, buildToolIdentifier: 'soci-proxy', spanSize: 1 << 20 });
    const [a, b] = r.manifest.layers;
    assert.deepEqual(a?.annotations, { [Annotation.imageLayerDigest]: D('l0'), [Annotation.imageLayerMediaType]: MediaType.ociLayerGzip });
    assert.equal(b?.annotations?.[Annotation.disableXattrs], 'true');
    assert.equal(r.manifest.annotations?.[Annotation.buildToolIdentifier], 'soci-proxy');
    assert.match(text(r.bytes), /"com\.amazon\.soci\.disable-xattrs":"true","com\.amazon\.soci\.image-layer-digest"/);
    const spans = buildSociIndex(layers, ztocs, { spanSize: 1 << 20 });
    assert.equal(spans.manifest.layers[0]?.annotations?.[Annotation.spanSize], '1048576');
    // Unknown xattr need never disables xattrs.
    const unknown = buildSociIndex(layers, new Map([[D('l0'), { digest: D('z0'), size: 1 }]]), { xattrOptimization: true });
    assert.equal(unknown.manifest.layers[0]?.annotations?.[Annotation.disableXattrs], undefined);
  });

  test('v1 has the v1 config type and a subject of mediaType/digest/size only; v1 without subject fails', () => {
    const subject = { mediaType: MediaType.dockerManifest, digest: D('m'), size: 5, platform: { architecture: 'amd64', os: 'linux' } };
    const r = buildSociIndex(layers, ztocs, { version: 'v1', subject });
    assert.equal(r.manifest.config.mediaType, MediaType.sociIndexV1);
    assert.match(text(r.bytes), new RegExp(`\\],"subject":\\{"mediaType":"${MediaType.dockerManifest.replace(/[.+]/g, '\\$&')}","digest":"${D('m')}","size":5\\},"annotations"`));
    assert.throws(() => buildSociIndex(layers, ztocs, { version: 'v1' }), { code: 'MANIFEST_INVALID' });
  });

  test('no zTOC at all is an empty index (ErrEmptyIndex)', () => {
    assert.throws(() => buildSociIndex(layers, new Map()), { code: 'MANIFEST_INVALID', message: /empty/ });
  });

  test('shouldDisableXattrs', () => {
    const e = (name: string, xattrs: Array<[string, string]> = []) => ({ name, xattrs }) as never;
    assert.equal(shouldDisableXattrs([e('a'), e('b', [['path', 'b'], ['LIBARCHIVE.x', '1']])]), true);
    assert.equal(shouldDisableXattrs([e('a', [['SCHILY.xattr.user.a', '1']])]), false);
    assert.equal(shouldDisableXattrs([e('d/.wh..wh..opq')]), false);
  });
});

describe('buildSociImage', () => {
  for (const top of ['docker', 'oci'] as const) {
    test(`multi-platform image, ${top} top level: rewritten index, manifests, SOCI descriptors`, async () => {
      const fx = buildFixtureImage({ top });
      const img = buildSociImage(fx.top, fx.platforms);
      const index = parseIndex(img.index.bytes);
      assert.equal(index.mediaType, MediaType.ociIndex);
      assert.deepEqual(img.index.bytes, marshalIndex(index));
      if (top === 'oci') assert.deepEqual(index.annotations, { 'org.opencontainers.image.ref.name': 'v1' });
      const [amd, arm, s390, att, sociAmd, sociArm, ...rest] = index.manifests as Descriptor[];
      assert.equal(rest.length, 0);

      // Manifests: all OCI now, digests changed, platforms kept, annotations = the manifest's own.
      const docOf = (d: Descriptor) => parseManifest(img.documents.get(d.digest)?.bytes as Uint8Array);
      for (const [d, orig] of [[amd, fx.originals.amd64], [arm, fx.originals.arm64], [s390, fx.originals.s390x]] as const) {
        assert.equal(d?.mediaType, MediaType.ociManifest);
        assert.notEqual(d?.digest, orig.digest);
        assert.deepEqual(d?.platform, orig.platform);
        assert.equal(img.rewritten.get(orig.digest), d?.digest);
        const m = docOf(d as Descriptor);
        assert.equal(m.mediaType, MediaType.ociManifest);
        assert.equal(m.config.mediaType, MediaType.ociConfig);
        assert.deepEqual(d?.annotations, m.annotations);
      }
      assert.deepEqual(att, fx.originals.attestation);

      // Config blob digests unchanged; layers untouched (Docker layer types survive).
      assert.equal(docOf(arm as Descriptor).config.digest, fx.manifests.arm64.config.digest);
      assert.deepEqual(docOf(arm as Descriptor).layers, fx.manifests.arm64.layers);
      assert.equal(docOf(arm as Descriptor).layers[0]?.mediaType, MediaType.dockerLayerGzip);
      // Descriptor-only annotation lost, as soci does.
      assert.equal(arm?.annotations?.['descriptor.only'], undefined);
      // amd64 keeps its own annotations plus the index digest.
      const amdDoc = docOf(amd as Descriptor);
      assert.equal(amdDoc.annotations?.['org.opencontainers.image.title'], 'fixture <amd64> & "friends"');
      assert.equal(amdDoc.annotations?.[Annotation.sociIndexDigest], fx.platforms[1]?.sociIndex?.digest);
      assert.equal(docOf(s390 as Descriptor).annotations, undefined);
      assert.equal(s390?.annotations, undefined);

      // SOCI descriptors appended in index order, exact field order.
      assert.equal(sociAmd?.digest, fx.platforms[1]?.sociIndex?.digest);
      assert.equal(sociArm?.digest, fx.platforms[0]?.sociIndex?.digest);
      assert.equal(
        text(marshalIndex({ schemaVersion: 2, manifests: [sociArm as Descriptor] })),
        `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"${sociArm?.digest}","size":${sociArm?.size},"annotations":{"com.amazon.soci.image-manifest-digest":"${arm?.digest}"},"platform":{"architecture":"arm64","os":"linux","variant":"v8"},"artifactType":"application/vnd.amazon.soci.index.v2+json"}]}`,
      );

      // The whole chain, as the snapshotter walks it.
      const all = new Map([...fx.store, ...[...img.documents].map(([k, v]) => [k, v.bytes] as const)]);
      const chain = await verifySociChain(img.index.bytes, (d) => all.get(d));
      assert.deepEqual(chain.map((c) => c.platform?.architecture), ['amd64', 'arm64']);
      assert.deepEqual(chain[0]?.ztocs.map((z) => z.layerDigest), fx.manifests.amd64.layers.slice(0, 2).map((l) => l.digest));

      // Deterministic: same inputs, same bytes, whatever the order of the platform inputs.
      const again = buildSociImage(fx.top, [...fx.platforms].reverse());
      assert.deepEqual(again.index.bytes, img.index.bytes);
    });
  }

  test('single-manifest image: wrapped in a new index with the config platform', async () => {
    const fx = buildFixtureImage({ top: 'docker' });
    const armBytes = fx.platforms[0]?.manifestBytes as Uint8Array;
    const img = buildSociImage(
      { mediaType: MediaType.dockerManifest, bytes: armBytes, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
      [fx.platforms[0] as never],
    );
    const index = parseIndex(img.index.bytes);
    assert.deepEqual(Object.keys(index), ['schemaVersion', 'mediaType', 'manifests']);
    assert.equal(index.manifests.length, 2);
    assert.equal(index.manifests[0]?.mediaType, MediaType.ociManifest);
    const all = new Map([...fx.store, ...[...img.documents].map(([k, v]) => [k, v.bytes] as const)]);
    assert.equal((await verifySociChain(img.index.bytes, (d) => all.get(d))).length, 1);
    assert.throws(() => buildSociImage({ mediaType: MediaType.dockerManifest, bytes: armBytes }, []), { code: 'MANIFEST_INVALID' });
  });

  test('an existing v2 SOCI descriptor for the same platform is replaced, not duplicated', () => {
    const fx = buildFixtureImage({ top: 'oci' });
    const first = buildSociImage(fx.top, fx.platforms);
    // Convert the converted image again, with new SOCI indexes (other span size).
    const fx2 = buildFixtureImage({ top: 'oci', soci: { spanSize: 1 << 20 } });
    const inputs = fx2.platforms.map((p) => ({ ...p, manifestBytes: first.documents.get(first.rewritten.get(sha256(p.manifestBytes)) as string)?.bytes as Uint8Array }));
    const second = buildSociImage({ mediaType: MediaType.ociIndex, bytes: first.index.bytes }, inputs);
    const list = parseIndex(second.index.bytes).manifests;
    const soci = list.filter((d) => d.artifactType === MediaType.sociIndexV2);
    assert.equal(list.length, 6);
    assert.deepEqual(soci.map((d) => d.digest).sort(), fx2.platforms.flatMap((p) => (p.sociIndex ? [p.sociIndex.digest] : [])).sort());
  });

  test('inputs that do not match the index are refused', () => {
    const fx = buildFixtureImage({ top: 'docker' });
    assert.throws(() => buildSociImage(fx.top, [{ manifestBytes: new TextEncoder().encode('{}') }]), /not listed/);
    const bad = { ...fx.platforms[0], sociIndex: { ...(fx.platforms[0]?.sociIndex as never as { bytes: Uint8Array; digest: string; size: number }), digest: D('other') } };
    assert.throws(() => buildSociImage(fx.top, [bad as never]), { code: 'DIGEST_INVALID' });
  });
});

describe('verifySociChain rejects broken chains', () => {
  function setup() {
    const fx = buildFixtureImage({ top: 'docker' });
    const img = buildSociImage(fx.top, fx.platforms);
    const all = new Map([...fx.store, ...[...img.documents].map(([k, v]) => [k, v.bytes] as const)]);
    return { fx, img, all, index: parseIndex(img.index.bytes) };
  }
  const run = (indexBytes: Uint8Array, all: Map<string, Uint8Array>) => verifySociChain(indexBytes, (d) => all.get(d));

  test('SOCI index before its image manifest', async () => {
    const { index, all } = setup();
    const m = index.manifests;
    const reordered = { ...index, manifests: [m[4], m[0], m[1], m[2], m[3], m[5]] as Descriptor[] };
    await assert.rejects(run(marshalIndex(reordered), all), /listed after its SOCI index/);
  });

  test('content that does not match its digest, or is missing', async () => {
    const { img, all, index } = setup();
    const sociDigest = index.manifests[4]?.digest as string;
    all.set(sociDigest, new Uint8Array([...(all.get(sociDigest) as Uint8Array)].map((b, i) => (i === 10 ? b ^ 1 : b))));
    await assert.rejects(run(img.index.bytes, all), /does not match its digest/);
    all.delete(sociDigest);
    await assert.rejects(run(img.index.bytes, all), /cannot be fetched/);
  });

  test('SOCI index that Go would re-marshal differently (whitespace, artifactType)', async () => {
    const { fx, all } = setup();
    const p = fx.platforms[1]?.sociIndex as { bytes: Uint8Array };
    for (const variant of [
      new TextEncoder().encode(JSON.stringify(JSON.parse(text(p.bytes)), null, 1)),
      marshalManifest({ ...parseManifest(p.bytes), artifactType: MediaType.sociIndexV2 }),
    ]) {
      const bytes = variant;
      const soci = { bytes, digest: sha256(bytes), size: bytes.length };
      const img = buildSociImage(fx.top, [fx.platforms[0] as never, { ...fx.platforms[1], sociIndex: soci } as never]);
      const store = new Map([...all, ...[...img.documents].map(([k, v]) => [k, v.bytes] as const)]);
      await assert.rejects(run(img.index.bytes, store), /changes when Go re-marshals it/);
    }
  });

  test('zTOC naming a layer that is not in the manifest; wrong config type; missing platform', async () => {
    const { fx, all } = setup();
    const realZtoc = parseManifest(fx.platforms[1]?.sociIndex?.bytes as Uint8Array).layers[0] as Descriptor;
    const bogus = buildSociIndex([{ mediaType: MediaType.ociLayerGzip, digest: D('nope'), size: 1 }], new Map([[D('nope'), { digest: realZtoc.digest, size: realZtoc.size }]]));
    const img = buildSociImage(fx.top, [{ ...fx.platforms[1], sociIndex: bogus } as never]);
    const store = new Map([...all, ...[...img.documents].map(([k, v]) => [k, v.bytes] as const)]);
    await assert.rejects(run(img.index.bytes, store), /not a layer of/);

    const good = buildSociImage(fx.top, fx.platforms);
    const idx = parseIndex(good.index.bytes);
    const noPlatform = { ...idx, manifests: idx.manifests.map((d) => (d.artifactType ? { ...d, platform: undefined } : d)) };
    await assert.rejects(run(marshalIndex(noPlatform), all), /has no platform/);
    const notOci = { ...idx, mediaType: MediaType.dockerManifestList };
    await assert.rejects(run(marshalIndex(notOci), all), /not the OCI index type/);
  });
});
