/* concepts.h — which ImageNet classes a word covers: the class itself ("malamute") or any broader
 * concept above it ("dog", "animal", "vehicle", "fruit").
 *
 * The table is models/<name>.concepts.json, written by tools/fetch-model from WordNet 3.0 (every
 * class's synset and all its hypernyms, with their words), so no WordNet is needed at run time.
 * Words match whatever their case, and hyphens, underscores and runs of spaces count as one space;
 * a plural is tried as its singular (WordNet's irregular plurals, then -ies, -es, -s).
 *
 * Errors: concepts_load gives IS_ERR_NOT_FOUND when the file is absent (a model fetched before
 * concept tables existed: run tools/fetch-model again), IS_ERR_MODEL when it is malformed or made
 * for another number of classes. Memory: the table owns everything it holds. Threads: immutable
 * after loading; every function may be called from any thread. */
#ifndef IMGSEARCH_CONCEPTS_H
#define IMGSEARCH_CONCEPTS_H

#include <stddef.h>

typedef struct concept_table concept_table;

/* The longest word looked up; longer ones name nothing. */
#define CONCEPTS_MAX_WORD 128

int concepts_load(const char *path, int num_classes, concept_table **out, char *err, size_t errlen);
void concepts_free(concept_table *t);

/* Sets classes[c] to 1 for every class the word covers and to 0 for the others (classes has
 * num_classes bytes). Returns how many it covers: 0 when the word names no class or concept. */
int concepts_match(const concept_table *t, const char *word, unsigned char *classes);

#endif
