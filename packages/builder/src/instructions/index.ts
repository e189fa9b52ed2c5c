import * as config from './config.js';
import * as filesystem from './filesystem.js';
import type { Handler } from './scope.js';

/** One handler per Dockerfile keyword (FROM is the stage's start, handled by the builder). */
export const HANDLERS: Readonly<Record<string, Handler>> = {
  ARG: config.ARG,
  ENV: config.ENV,
  LABEL: config.LABEL,
  MAINTAINER: config.MAINTAINER,
  CMD: config.CMD,
  ENTRYPOINT: config.ENTRYPOINT,
  SHELL: config.SHELL,
  USER: config.USER,
  EXPOSE: config.EXPOSE,
  VOLUME: config.VOLUME,
  STOPSIGNAL: config.STOPSIGNAL,
  HEALTHCHECK: config.HEALTHCHECK,
  ONBUILD: config.ONBUILD,
  WORKDIR: filesystem.WORKDIR,
  COPY: filesystem.COPY,
  ADD: filesystem.ADD,
  RUN: filesystem.RUN,
};

export { checkDockerfile, checkInstruction } from './checks.js';
export { truncate } from './filesystem.js';
export type { Handler, StepScope, StepTarget } from './scope.js';
