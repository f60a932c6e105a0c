/**
 * SOCI artifacts above the zTOC (soci-format.md §1–§3): the SOCI index manifest (v2, or v1 with a
 * subject), the SOCI-enabled image (rewritten index and manifests) and a checker of the whole chain.
 */
export { buildSociIndex, shouldDisableXattrs, SOCI_CONFIG_BLOB, type LayerZtoc, type SociIndexOptions, type SociIndexResult } from './index-manifest.js';
export { buildSociImage, type OriginalImage, type PlatformInput, type SociDocument, type SociImage } from './soci-image.js';
export { verifySociChain, type FetchByDigest, type VerifiedPlatform } from './verify-chain.js';
