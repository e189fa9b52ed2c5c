export { type CheckFinding, lintDockerfile, undefinedVars, copyIgnored, basePlatform } from './rules.js';
export { checkSettings, type CheckSettings } from './directive.js';
export { BuildChecks, type CheckEvent } from './reporter.js';
export { checkBuild } from './check-build.js';
