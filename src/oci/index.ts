/**
 * The public surface of the `oci` leaf: media types and SOCI constants, digests, error classes, the
 * image-spec document types and Go-compatible JSON (marshal byte-exactly as Go, parse with validation).
 * Nothing here imports from another folder of soci-proxy.
 */
export * from './media-types.js';
export * from './digest.js';
export * from './errors.js';
export type * from './types.js';
export {
  marshalManifest,
  marshalIndex,
  marshalDescriptor,
  parseManifest,
  parseIndex,
  isGoCanonicalManifest,
  compareUtf8,
  type GoJsonOptions,
  type ParseOptions,
} from './go-json.js';
