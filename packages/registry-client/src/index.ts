export { registryEndpoint } from './endpoint.js';
export { parseWwwAuthenticate, type Challenge } from './www-authenticate.js';
export {
  RegistryClient,
  MAX_MANIFEST_SIZE,
  MANIFEST_MEDIA_TYPES,
  type RegistryClientOptions,
  type PutBlobOptions,
  type ProgressEvent,
} from './registry-client.js';
export { pull, pullAllPlatforms, type PullOptions } from './pull.js';
export { remoteListEntries } from './remote-list.js';
export { push, type PushOptions } from './push.js';
export { login } from './login.js';
export {
  authFileProvider,
  staticAuthProvider,
  defaultAuthFile,
  storeCredentials,
  logout,
  parseCreds,
  type AuthProvider,
  type Credentials,
} from './auth-provider.js';
export { selectPlatform } from './platform-select.js';
export { registryErrorInfo, type RegistryErrorInfo } from './registry-error.js';
export { remoteImage } from './remote-image.js';
