/**
 * A byte-exact push of an OCI layout entry to a registry over the distribution API. skopeo re-compresses
 * uncompressed layers when it pushes to a registry (it did so here with skopeo 1.9 even without
 * --dest-compress), which would turn the harness's `application/vnd.oci.image.layer.v1.tar` layers into
 * gzip ones; this pusher sends every blob and manifest exactly as stored. Blobs go up with POST then
 * PUT ?digest= (monolithic, after a HEAD to skip blobs the repo already has), child manifests of an index
 * by digest, then the top manifest or index by tag, each with its media type as Content-Type.
 */
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor, Index, Manifest } from '../../src/oci/types.js';
import { readBlob, resolveTag } from './oci-layout.js';

export interface ExactPushOptions {
  /** http://127.0.0.1:PORT */
  registry: string;
  repo: string;
  /** Destination tag; defaults to the layout tag. */
  tag?: string;
  /** Authorization header value (e.g. Registry.authorization). */
  authorization?: string;
}

async function send(url: string, init: RequestInit, ok: number[], what: string): Promise<Response> {
  const res = await fetch(url, init);
  if (!ok.includes(res.status)) {
    const body = await res.text();
    throw new Error(`push ${what}: ${init.method ?? 'GET'} ${url} -> ${res.status} ${body.slice(0, 500)}`);
  }
  return res;
}

async function pushBlob(o: ExactPushOptions, headers: Record<string, string>, data: Buffer, digest: string): Promise<void> {
  const base = `${o.registry}/v2/${o.repo}/blobs`;
  const head = await fetch(`${base}/${digest}`, { method: 'HEAD', headers });
  if (head.status === 200) return;
  const start = await send(`${base}/uploads/`, { method: 'POST', headers }, [202], digest);
  await start.arrayBuffer();
  const loc = start.headers.get('location');
  if (!loc) throw new Error('push: no Location on upload start');
  const url = new URL(loc, o.registry);
  url.searchParams.set('digest', digest);
  const res = await send(url.toString(), { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: data }, [201], digest);
  await res.arrayBuffer();
}

async function pushManifest(o: ExactPushOptions, headers: Record<string, string>, bytes: Buffer, mediaType: string, reference: string): Promise<void> {
  const res = await send(
    `${o.registry}/v2/${o.repo}/manifests/${reference}`,
    { method: 'PUT', headers: { ...headers, 'content-type': mediaType }, body: bytes },
    [201],
    reference,
  );
  await res.arrayBuffer();
}

async function pushTree(layout: string, o: ExactPushOptions, headers: Record<string, string>, desc: Descriptor, reference: string): Promise<void> {
  const bytes = readBlob(layout, desc.digest);
  const doc = JSON.parse(bytes.toString('utf8')) as Partial<Manifest & Index>;
  const mediaType = doc.mediaType ?? desc.mediaType;
  if (mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList) {
    for (const child of doc.manifests ?? []) await pushTree(layout, o, headers, child, child.digest);
  } else {
    for (const d of [doc.config, ...(doc.layers ?? [])]) if (d) await pushBlob(o, headers, readBlob(layout, d.digest), d.digest);
  }
  await pushManifest(o, headers, bytes, mediaType, reference);
}

/** Pushes the image or index tagged `layoutTag` in `layout`, byte for byte. */
export async function pushExact(layout: string, layoutTag: string, o: ExactPushOptions): Promise<void> {
  const desc = resolveTag(layout, layoutTag);
  if (!desc) throw new Error(`push: tag ${layoutTag} not in ${layout}`);
  const headers: Record<string, string> = o.authorization ? { authorization: o.authorization } : {};
  await pushTree(layout, o, headers, desc, o.tag ?? layoutTag);
}
