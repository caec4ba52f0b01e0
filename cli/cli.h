/* cli/cli.h — the `sparrow` subcommands. Each takes argv with argv[0] = the subcommand name and
 * returns the process exit status. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include <stdbool.h>

int sp_cli_run(int argc, char **argv);
int sp_cli_inspect(int argc, char **argv);
int sp_cli_synth(int argc, char **argv);
int sp_cli_tokenize(int argc, char **argv);
int sp_cli_serve(int argc, char **argv);
int sp_cli_template(int argc, char **argv);
int sp_cli_pull(int argc, char **argv);
int sp_cli_bench(int argc, char **argv);
int sp_cli_devices(int argc, char **argv);

/* The default model for commands given no -m: a tiny random-weight model written by synth into
 * the cache directory on first use. Writes its path into buf. */
bool sp_cli_default_model(char *buf, unsigned cap);
/* Write a synth preset to path (used by the default model); false + message on stderr on failure. */
bool sp_synth_write(const char *preset, const char *type, const char *path, unsigned long long seed, bool quiet);

#endif
