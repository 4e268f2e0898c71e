/*
 * privacy.h - masking of personal numbers in free text: mainland mobile phone numbers,
 * resident ID card numbers (18 digits with a valid check digit, or the old 15-digit form) and
 * bank card numbers (16 to 19 digits passing the Luhn check).  Digits may be ASCII or
 * full-width and may be grouped with single spaces or hyphens ("6222 0212 3456 7897").
 *
 * Masks keep what a human needs to recognise the number and nothing more: a phone keeps its
 * first 3 and last 4 digits, an ID card its first 6 (region) and last 4, a bank card its
 * first 6 (issuer) and last 4.  Other numbers (order numbers, amounts) are left alone.
 */
#ifndef REDRESS_PRIVACY_H
#define REDRESS_PRIVACY_H

#include <stddef.h>

/* Writes the masked text into out (always NUL-terminated, cut at outlen - 1 bytes on a
 * character boundary).  Returns the number of numbers masked. */
int privacy_mask(const char *text, char *out, size_t outlen);

/* As privacy_mask into a malloc'ed copy (the caller frees), or NULL when out of memory. */
char *privacy_mask_dup(const char *text);

#endif
