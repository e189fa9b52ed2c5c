import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './harness.js';

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value: string }[];
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}

/** A YAML file parsed by PyYAML (Debian's python3-yaml): no Kubernetes here, only its input checked. */
function loadYaml(file: string): unknown {
  return JSON.parse(execFileSync('python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', file], { encoding: 'utf8' }));
}

describe('deploy/kubernetes/build-job.yaml', () => {
  const job = loadYaml(path.join(REPO, 'deploy/kubernetes/build-job.yaml')) as {
    kind: string;
    spec: { template: { spec: { hostUsers: boolean; securityContext: Record<string, unknown>; containers: Container[]; volumes: { name: string; emptyDir?: object; secret?: { secretName: string } }[] } } };
  };
  const pod = job.spec.template.spec;
  const tsbuild = pod.containers.find((c) => c.name === 'tsbuild')!;

  it('runs tsbuild as root of the pod\'s own user namespace with only what nesting needs', () => {
    expect(job.kind).toBe('Job');
    expect(pod.hostUsers).toBe(false);
    expect(pod.securityContext).toEqual({ seccompProfile: { type: 'Unconfined' } });
    expect(tsbuild.securityContext).toEqual({
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { add: [] },
      procMount: 'Unmasked',
      appArmorProfile: { type: 'Unconfined' },
    });
  });

  it('builds with the shared registry cache and --network host, pushes with credentials from a Secret, stores in an emptyDir', () => {
    const script = tsbuild.args!.join(' ');
    expect(script).toMatch(/^tsbuild build --network host --cache-from (\S+) --cache-to \1 -t (\S+) \/workspace && tsbuild push \2$/);
    const authFile = tsbuild.env!.find((e) => e.name === 'REGISTRY_AUTH_FILE')!.value;
    const authMount = tsbuild.volumeMounts!.find((m) => authFile.startsWith(`${m.mountPath}/`))!;
    expect(pod.volumes.find((v) => v.name === authMount.name)!.secret).toBeDefined();
    const store = tsbuild.volumeMounts!.find((m) => m.mountPath === '/var/lib/tsbuild')!;
    expect(pod.volumes.find((v) => v.name === store.name)!.emptyDir).toBeDefined();
  });
});
