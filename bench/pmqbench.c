/* PROCMAP_QUERY client for bench/procmap_query.py: walks the VMAs of one
 * maps fd with COVERING_OR_NEXT_VMA (0x10), wrapping to address 0 after the
 * last one, for a fixed time per repetition, and prints the ns per ioctl of
 * each repetition:  ns_per_op=a,b,c  vmas=N
 *
 *   pmqbench [-t seconds] [-r reps] [-n] MAPS
 *
 * -n asks for the name (4096-byte buffer) and the build ID (20 bytes) too,
 * so the server has to write both into this process. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct procmap_query {
    uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
    uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
    uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY 0xC0686611u
#define COVERING_OR_NEXT_VMA 0x10

static char name[4096];
static unsigned char build_id[20];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* one query from *addr; advances it to the VMA's end (0 after the last);
 * returns 1 when a VMA was found */
static int query(int fd, uint64_t *addr, int names)
{
    struct procmap_query q = { .size = sizeof q, .query_flags = COVERING_OR_NEXT_VMA, .query_addr = *addr };
    if (names) {
        q.vma_name_addr = (uintptr_t)name;
        q.vma_name_size = sizeof name;
        q.build_id_addr = (uintptr_t)build_id;
        q.build_id_size = sizeof build_id;
    }
    if (ioctl(fd, PROCMAP_QUERY, &q) < 0) {
        if (errno != ENOENT) {
            perror("PROCMAP_QUERY");
            exit(2);
        }
        *addr = 0;
        return 0;
    }
    *addr = q.vma_end;
    return 1;
}

int main(int argc, char **argv)
{
    double dur = 0.3;
    int reps = 5, names = 0, o;
    while ((o = getopt(argc, argv, "t:r:n")) != -1) {
        switch (o) {
        case 't': dur = atof(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'n': names = 1; break;
        default: return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: pmqbench [-t seconds] [-r reps] [-n] MAPS\n");
        return 2;
    }
    int fd = open(argv[optind], O_RDONLY);
    if (fd < 0) {
        perror(argv[optind]);
        return 2;
    }
    uint64_t addr = 0;
    long vmas = 0;
    while (query(fd, &addr, names))  /* one walk: count the VMAs, warm up */
        vmas++;
    printf("ns_per_op=");
    for (int r = 0; r < reps; r++) {
        long n = 0;
        double t0 = now(), t;
        do {
            for (int i = 0; i < 16; i++, n++)
                query(fd, &addr, names);
            t = now();
        } while (t - t0 < dur);
        printf("%s%.0f", r ? "," : "", (t - t0) * 1e9 / n);
    }
    printf(" vmas=%ld\n", vmas);
    return 0;
}
