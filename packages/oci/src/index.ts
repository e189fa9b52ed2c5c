export * from './errors.js';
export * from './digest.js';
export * from './media-types.js';
export * from './image-spec.js';
export * from './reference.js';
export * from './chain-id.js';
export * from './platform.js';
export * from './chunk-release.js';
