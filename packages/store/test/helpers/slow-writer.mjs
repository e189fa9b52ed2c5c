// Child process for crash.test.ts: under the shared lock, streams a big blob slowly into the
// store and says "writing" once it is well under way; the test kills it with SIGKILL.
// argv: root expectedDigest
import { Store } from '@tsbuild/store';

const [root, expected] = process.argv.slice(2);
const store = await Store.open(root);
await store.withLock('shared', async () => {
  const w = await store.content.write({ expected, size: 256 << 20 });
  const chunk = Buffer.alloc(1 << 20, 0x61);
  for (let i = 0; i < 256; i++) {
    if (!w.write(chunk)) await new Promise((r) => w.once('drain', r));
    if (i === 8) process.stdout.write('writing\n');
    await new Promise((r) => setTimeout(r, 20));
  }
  await w.commit();
});
