import { Args } from '../cli-kit.js';
import { WorkingContainer, editConfig } from '@tsbuild/container';
import { BaseCommand } from '../base-command.js';
import { configChanges, configFlags } from '../config-flags.js';

export default class Config extends BaseCommand<typeof Config> {
  static override summary = 'Change a working container\'s image config (env, cmd, entrypoint, labels, healthcheck …)';
  static override description =
    'As `buildah config`: each flag edits the config the next `tsbuild commit` writes. `--env K=V` sets (and expands ' +
    '$VARS from the config), `--env K-` removes; `--label`, `--annotation`, `--port`, `--volume` likewise with `K-`. ' +
    '`--entrypoint` and `--cmd` take JSON arrays or a shell form. Docker-only fields (healthcheck, onbuild, shell, ' +
    'domainname, hostname, comment) are kept as buildah keeps them, and written with `commit --format docker`.';
  static override examples = [
    '<%= config.bin %> config --env PATH=/app/bin:$PATH --workingdir /app $ctr',
    '<%= config.bin %> config --cmd \'["/app/server","--port","8080"]\' --port 8080 --label org.opencontainers.image.source=https://example.org $ctr',
    '<%= config.bin %> config --env DEBUG- --healthcheck \'CMD wget -q -O- localhost:8080/health\' --healthcheck-interval 10s $ctr',
  ];
  static override args = { container: Args.string({ description: 'working container name or ID', required: true }) };
  static override flags = configFlags;

  async run(): Promise<void> {
    const { args } = await this.parse(Config);
    const changes = configChanges(this.flags);
    const wc = await WorkingContainer.open(await this.containerEnv(), args.container);
    let warnings: string[] = [];
    await wc.updateConfig((r) => {
      const edit = editConfig(r.config, r.annotations, changes);
      r.config = edit.config;
      r.annotations = edit.annotations;
      if (edit.commit.createdBy !== undefined) r.createdBy = edit.commit.createdBy;
      if (edit.commit.historyComment !== undefined) r.historyComment = edit.commit.historyComment;
      warnings = edit.warnings;
    });
    for (const w of warnings) process.stderr.write(`WARN: ${w}\n`);
  }
}
