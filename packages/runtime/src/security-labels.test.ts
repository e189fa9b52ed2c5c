import { describe, expect, it } from 'vitest';
import { composeSelinuxLabels } from './security-labels.js';

const LXC = { process: 'system_u:system_r:container_t:s0', file: 'system_u:object_r:container_file_t:s0' };

describe('SELinux labels (go-selinux InitLabels semantics)', () => {
  it('default: the policy container contexts with the run\'s MCS pair', () => {
    expect(composeSelinuxLabels({}, LXC, 's0:c1,c2')).toEqual({ processLabel: 'system_u:system_r:container_t:s0:c1,c2', mountLabel: 'system_u:object_r:container_file_t:s0:c1,c2' });
  });

  it('user and level replace both labels\' fields; role and type the process label\'s; filetype the mount label\'s type', () => {
    expect(composeSelinuxLabels({ user: 'user_u', role: 'object_r', type: 'spc_t', level: 's0:c5,c9', filetype: 'my_file_t' }, LXC, 's0:c1,c2')).toEqual({
      processLabel: 'user_u:object_r:spc_t:s0:c5,c9',
      mountLabel: 'user_u:object_r:my_file_t:s0:c5,c9',
    });
  });
});
