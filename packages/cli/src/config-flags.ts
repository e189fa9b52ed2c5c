import { Flags, type InferredFlags } from './cli-kit.js';
import { type ConfigChanges, type ConfigFlagInput, configChangesFromFlags } from '@tsbuild/container';

/**
 * `tsbuild config`'s flags, with buildah's names, short forms and help texts (cmd/buildah/config.go),
 * so the parsed values are keyed as @tsbuild/container's configChangesFromFlags reads them. Lists
 * are `multiple`: pflag's StringSlice ones (--port, --volume, --onbuild, --unsetlabel,
 * --unsetannotation) are split at commas by configChangesFromFlags, as buildah splits them.
 */
export const configFlags = {
  'add-history': Flags.boolean({ description: "add an entry for this operation to the image's history (default false)", env: 'BUILDAH_HISTORY' }),
  annotation: Flags.string({ char: 'a', multiple: true, description: 'add annotation e.g. annotation=value, for the target image; KEY- removes one, - removes all' }),
  arch: Flags.string({ description: 'set architecture of the target image' }),
  author: Flags.string({ description: 'set image author contact information' }),
  cmd: Flags.string({ description: 'set the default command to run for containers based on the image (a JSON array, or words)' }),
  comment: Flags.string({ description: 'set a comment in the target image' }),
  'created-by': Flags.string({ description: 'set description of how the image was created' }),
  domainname: Flags.string({ description: 'set a domain name for containers based on image' }),
  entrypoint: Flags.string({ description: 'set entry point for containers based on image (a JSON array, or a command for /bin/sh -c)' }),
  env: Flags.string({ char: 'e', multiple: true, description: 'add environment variable to be set when running containers based on image; KEY- removes one, - removes all, KEY takes the value from the environment' }),
  healthcheck: Flags.string({ description: 'set a healthcheck command for the target image (CMD ..., CMD-SHELL ... or NONE)' }),
  'healthcheck-interval': Flags.string({ description: 'set the interval between runs of the healthcheck command for the target image' }),
  'healthcheck-retries': Flags.string({ description: 'set the number of times the healthcheck command has to fail' }),
  'healthcheck-start-period': Flags.string({ description: 'set the amount of time to wait after starting a container before a failed healthcheck command will count as a failure' }),
  'healthcheck-start-interval': Flags.string({ description: 'set the time between health checks during the start period' }),
  'healthcheck-timeout': Flags.string({ description: 'set the maximum amount of time to wait for a healthcheck command for the target image' }),
  'history-comment': Flags.string({ description: 'set a comment for the history of the target image' }),
  hostname: Flags.string({ description: 'set a hostname for containers based on image' }),
  label: Flags.string({ char: 'l', multiple: true, description: 'add image configuration label e.g. label=value; KEY- removes one, - removes all' }),
  onbuild: Flags.string({ multiple: true, description: 'add onbuild command to be run on images based on this image' }),
  os: Flags.string({ description: 'set operating system of the target image' }),
  'os-feature': Flags.string({ multiple: true, description: 'set required OS feature for the target image' }),
  'os-version': Flags.string({ description: 'set required OS version for the target image' }),
  port: Flags.string({ char: 'p', multiple: true, description: 'add port to expose when running containers based on image; PORT- removes one, - removes all' }),
  shell: Flags.string({ description: 'add shell to run in containers' }),
  'stop-signal': Flags.string({ description: 'set stop signal for containers based on image' }),
  user: Flags.string({ char: 'u', description: 'set default user to run inside containers based on image' }),
  variant: Flags.string({ description: 'set architecture variant of the target image' }),
  volume: Flags.string({ char: 'v', multiple: true, description: 'add default volume path to be created for containers based on image; PATH- removes one, - removes all' }),
  workingdir: Flags.string({ description: 'set working directory for containers based on image' }),
  unsetlabel: Flags.string({ multiple: true, description: 'remove image configuration label' }),
  unsetannotation: Flags.string({ multiple: true, description: 'remove image configuration annotation' }),
};

export type ConfigFlagValues = InferredFlags<typeof configFlags>;

/** The parsed flags as the config editor takes them. */
export function configChanges(flags: ConfigFlagValues): ConfigChanges {
  return configChangesFromFlags(flags as ConfigFlagInput);
}
