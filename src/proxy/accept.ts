/**
 * Accept negotiation for manifests. Clients send several `Accept` headers (Node joins them with ", ");
 * every listed type counts, parameters (`;q=`) are ignored, and `*\/*` accepts anything.
 */
import { MediaType } from '../oci/media-types.js';

export const ALL_MANIFEST_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest];

export function parseAccept(header: string | undefined): string[] {
  if (!header) return [];
  return header
    .split(',')
    .map((s) => (s.split(';')[0] ?? '').trim().toLowerCase())
    .filter(Boolean);
}

export function accepts(accept: readonly string[], mediaType: string): boolean {
  return accept.includes(mediaType) || accept.includes('*/*');
}
