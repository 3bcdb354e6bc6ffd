/* lpattern.h: Lua 5.4's string pattern functions (string.find, string.match,
 * string.gmatch, string.gsub) with their matching work charged to a budget.
 *
 * Lua's own implementations run in C between two VM instructions, so the
 * sandbox's instruction hook cannot stop a backtracking pattern
 * (string.find(("a"):rep(40), ("a?"):rep(40) .. ("a"):rep(40)) runs for
 * hours). These follow the Lua 5.4 reference manual (section 6.4.1) and
 * return the same results and raise the same errors as the stock library
 * (tests/test_lpattern.c checks that against it on random patterns), but
 * every matching step (a recursive match call, a character tried by a
 * repetition, a byte compared by a back-reference or a plain find) is
 * charged through charge(L, steps), in batches, which may raise a Lua error
 * to stop the call. */
#ifndef PL_LPATTERN_H
#define PL_LPATTERN_H

#include <stdint.h>
#include <lua.h>

typedef void (*pl_lpattern_charge_fn)(lua_State *L, int64_t steps);

/* Replace find, match, gmatch and gsub in the table at index idx (the string
 * library) with the charged versions. */
void pl_lpattern_install(lua_State *L, int idx, pl_lpattern_charge_fn charge);

#endif
