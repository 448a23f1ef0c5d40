/*
 * sunk_pyxis: a SPANK plugin that gives sbatch/srun/salloc pyxis' container options
 * (--container-image, --container-mounts, --container-workdir) without running containers itself.
 *
 * On a pod-group partition the job runs as pods of the named image; Slurm passes the option values to
 * the job as SLURM_SPANK__SLURM_SPANK_OPTION_pyxis_<option> variables, which the launcher reads. The
 * plugin registers under the name "pyxis" so scripts that read those variables keep working.
 *
 * Only the public SPANK ABI is used (declared below), so no Slurm headers are needed to build it:
 *   cc -shared -fPIC -o sunk_pyxis.so sunk_pyxis.c -DSUNK_SLURM_VERSION=0x160500
 */
#include <stdio.h>
#include <string.h>

#ifndef SUNK_SLURM_VERSION
#define SUNK_SLURM_VERSION 0x160500 /* 22.05 */
#endif

typedef int (*spank_opt_cb_f)(int val, const char *optarg, int remote);

struct spank_option {
    char *name;
    char *arginfo;
    char *usage;
    int has_arg;
    int val;
    spank_opt_cb_f cb;
};

const char plugin_name[] = "pyxis";
const char plugin_type[] = "spank";
const unsigned int plugin_version = SUNK_SLURM_VERSION;
const unsigned int spank_plugin_version = 1;

static int check_image(int val, const char *arg, int remote)
{
    (void)val;
    if (remote)
        return 0;
    if (arg == NULL || *arg == '\0' || strchr(arg, ' ') != NULL) {
        fprintf(stderr, "error: --container-image: '%s' is not an image reference; write NAME[:TAG]\n",
                arg ? arg : "");
        return -1;
    }
    return 0;
}

static int check_mounts(int val, const char *arg, int remote)
{
    const char *p = arg;
    (void)val;
    if (remote)
        return 0;
    while (p != NULL && *p != '\0') {
        if (*p != '/') {
            fprintf(stderr, "error: --container-mounts: '%s': every entry must be SRC[:DST[:ro|rw]] "
                    "with absolute paths\n", arg);
            return -1;
        }
        p = strchr(p, ',');
        if (p != NULL)
            p++;
    }
    if (arg == NULL || *arg == '\0') {
        fprintf(stderr, "error: --container-mounts needs a value\n");
        return -1;
    }
    return 0;
}

static int check_workdir(int val, const char *arg, int remote)
{
    (void)val;
    if (remote)
        return 0;
    if (arg == NULL || arg[0] != '/') {
        fprintf(stderr, "error: --container-workdir: '%s' must be an absolute path\n", arg ? arg : "");
        return -1;
    }
    return 0;
}

static struct spank_option options[] = {
    {"container-image", "[USER@][REGISTRY#]IMAGE[:TAG]", "[pyxis] the image the job's pods run", 1, 0,
     check_image},
    {"container-mounts", "SRC:DST[:FLAGS][,SRC:DST...]", "[pyxis] bind mounts into the job's pods", 1, 0,
     check_mounts},
    {"container-workdir", "PATH", "[pyxis] working directory inside the job's pods", 1, 0, check_workdir},
    {NULL, NULL, NULL, 0, 0, NULL},
};

/* From Slurm's SPANK API (libslurm); registering in slurm_spank_init works in every context. */
extern int spank_option_register(void *sp, struct spank_option *opt);

int slurm_spank_init(void *sp, int ac, char **av)
{
    struct spank_option *opt;
    (void)ac;
    (void)av;
    for (opt = options; opt->name != NULL; opt++) {
        if (spank_option_register(sp, opt) != 0)
            return -1;
    }
    return 0;
}
