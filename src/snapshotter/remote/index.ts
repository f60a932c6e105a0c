/**
 * The snapshotter's remote side: reaching a layer blob by HTTP Range requests (`HttpRangeSource`) and
 * caching its verified, inflated spans (`SpanFetcher`). No FUSE and no gRPC here.
 */
export { HttpRangeSource, type HttpRangeSourceOptions } from './http-range-source.js';
export { SpanFetcher, type SpanFetcherOptions, type SpanFetcherStats } from './span-fetcher.js';
