// Child process for concurrency.test.ts: writes N small images and names them, all at once,
// under the store's shared lock. argv: root prefix count
import { randomBytes } from 'node:crypto';
import { Store } from '@tsbuild/store';

const [root, prefix, count] = process.argv.slice(2);
const store = await Store.open(root);
await store.withLock('shared', () =>
  Promise.all(
    Array.from({ length: Number(count) }, async (_, i) => {
      const layer = await store.content.writeBuffer(randomBytes(4096));
      const config = await store.putJSON(
        { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } },
        'application/vnd.oci.image.config.v1+json',
      );
      const manifest = await store.putJSON(
        {
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config,
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
        },
        'application/vnd.oci.image.manifest.v1+json',
      );
      await store.setName(`${prefix}/img:${i}`, manifest);
    }),
  ),
);
