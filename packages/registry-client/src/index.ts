export { registryEndpoint } from './endpoint.js';
export { parseWwwAuthenticate, type Challenge } from './www-authenticate.js';
