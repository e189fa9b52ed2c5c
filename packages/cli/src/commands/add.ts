import Copy from './copy.js';

export default class Add extends Copy {
  static override kind: 'COPY' | 'ADD' = 'ADD';
  static override summary = 'Add files, local archives (unpacked) and URLs (fetched) into a working container (ADD semantics)';
  static override description =
    'As `buildah add`: as `tsbuild copy`, and a local tar archive (plain or compressed) is unpacked into the destination, ' +
    'a URL is downloaded (--checksum checks it). The rules are those of the Dockerfile\'s ADD.';
  static override examples = ['<%= config.bin %> add $ctr rootfs.tar.gz /', '<%= config.bin %> add --checksum sha256:… $ctr https://example.org/tool.tgz /opt/'];
}
