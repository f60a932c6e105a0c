/**
 * Public surface of the upstream registry client: configuration and routing (`resolveRoute`), the
 * `UpstreamClient` and its result types, the header redaction helper for logs, and the small wrappers
 * (auth, redirect, retry) for callers that compose their own `Send`.
 */
export { UPSTREAM_DEFAULTS, normalizeUpstream, type Upstream, type UpstreamConfig, type UpstreamsConfig, type UpstreamRetry, type UpstreamTimeouts } from './config.js';
export { compileRoutes, isRepositoryName, resolveRoute, type Route, type RouteTable } from './route.js';
export {
  MANIFEST_ACCEPT, UpstreamClient,
  type BlobHeadResult, type BlobOptions, type BlobResult, type CallOptions, type ManifestOptions, type ManifestResult,
  type PingResult, type TagsResult, type UpstreamClientOptions,
} from './client.js';
export { AuthCache, withAuth, type AuthOptions } from './auth.js';
export { parseChallenges, type Challenge } from './challenge.js';
export { PROXY_CHALLENGE, errorFromException, errorFromResponse, unauthorized, type RequestKind } from './error-map.js';
export { withRedirects, type RedirectOptions } from './redirect.js';
export { retryAfterMs, withRetry, type RetryOptions } from './retry.js';
export { createUpstreamAgent, dispatcherSend, redactHeaders, redactUrl, type Send, type UpstreamRequest, type UpstreamResponse } from './transport.js';
