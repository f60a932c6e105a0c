/**
 * The snapshotter's remote side: reaching a layer blob by HTTP Range requests (`HttpRangeSource`) and
 * keeping its verified, inflated spans (`SpanFetcher`) in one sparse file per layer (`SpanFile`), checked
 * and inflated on a worker thread (`SpanInflater`). No FUSE and no gRPC here.
 */
export { HttpRangeSource, type HttpRangeSourceOptions } from './http-range-source.js';
export { SpanFetcher, type SpanFetcherOptions, type SpanFetcherStats } from './span-fetcher.js';
export { SpanFile, type SpanFileOptions, type SpanRange } from './span-file.js';
export { SpanInflater, type InflateOutcome, type InflatePart } from './span-inflater.js';
