-- cap.m: the exact cap (lib/cache.c take_block_locked, lib/steal.c cache_steal_locked,
-- cache_flush_locked, cache_grow_locked; lib/pool.c pool_map_slab,
-- pool_grow_request). verify/README.md maps every rule to the C code and
-- states the bounds.
--
-- Threads acquire and release through their caches (loaded + previous
-- magazine, Bonwick); at the cap an acquire takes the growth lock and runs
-- take_block_locked: depot, grow if below the cap, steal every other cache
-- keeping the first stolen magazine, one more pass, fail. Memory is
-- sequentially consistent here and the steal handshake is taken as
-- verified (steal.m): an owner inside a cache operation (busy) is waited
-- for, and one that sees its steal flag steps aside until the stealer
-- unlocks. Blocks are counted, not named (they are interchangeable here).
--
-- Variants (VARIANT, substituted by verify/meson.build):
--   0  cap               the protocol: must hold, both claims (the steal
--                        leaves no idle block behind; a failed acquire saw,
--                        at some instant of its call, no idle block anywhere)
--   1  cap-nowait        the stealer does not wait for owners inside an
--                        operation: the steal must be found to leave idle
--                        blocks behind
--   2  cap-0.1           the protocol before 0.2, whose stealer kept nothing
--                        when it stole nothing: the stronger claim must be
--                        found violated (see README)

const
  VARIANT : 0;

  NT : 3;          -- threads, each with a cache
  M : 2;           -- rounds per magazine
  INIT : 2;        -- initial_blocks
  CAP : 5;         -- max_blocks (grow_factor 2: slabs of 2, 2, 1)

  WAIT_OWNERS : (VARIANT = 1) ? 0 : 1;
  CHECK_LIN : (VARIANT = 1) ? 0 : 1;
  FIX : (VARIANT = 2) ? 0 : 1;   -- cache_steal_locked keeps a depot magazine

type
  thread_t : scalarset(NT);
  rounds_t : 0..M;
  blocks_t : 0..CAP;
  pc_t : enum { IDLE,
                A_ENTER, A_BODY, A_POP, A_INSTALL, A_LOCK,   -- acquire (no lock)
                T_POP, T_GROW, T_STEAL, T_STOPPED,           -- take_block_locked
                R_ENTER, R_BODY, R_PUSH,                     -- release
                WAIT_LOCK };                                 -- wait_out_steal
  thread_state : record
    pc : pc_t;
    ret : pc_t;          -- where wait_out_steal returns to (A_ENTER / R_ENTER)
    busy : boolean;      -- tc->busy
    steal : boolean;     -- tc->steal
    lr, pr : rounds_t;   -- tc->lrounds, tc->prounds
    user : blocks_t;     -- blocks the thread's user holds
    inflight : rounds_t; -- a full magazine popped, not yet installed
    stolen : rounds_t;   -- take_block_locked's `stolen` (0: NULL)
    grew, stole : boolean;
    -- ghost
    none_idle_seen : boolean;   -- since this acquire began, an instant with no idle block
    left_out : blocks_t;        -- idle blocks the steal left outside depot + keep
  end;

var
  th : array [thread_t] of thread_state;
  depot : array [1..M] of 0..CAP;       -- full magazines on the depot, by count
  total : blocks_t;                      -- slabs.blocks_total
  grow_locked : boolean;
  failures : 0..1;                       -- ghost: some acquire failed (cover)

---------------------------------------------------------------- accounting

function depot_blocks() : 0..CAP * M;
var n : 0..CAP * M;
begin
  n := 0;
  for k : 1..M do n := n + k * depot[k]; endfor;
  return n;
end;

function depot_mags() : 0..CAP;
var n : 0..CAP;
begin
  n := 0;
  for k : 1..M do n := n + depot[k]; endfor;
  return n;
end;

function idle_in(t : thread_t) : 0..3 * M;
begin
  return th[t].lr + th[t].pr + th[t].inflight + th[t].stolen;
end;

function idle_total() : 0..CAP * M + NT * 4 * M;
var n : 0..CAP * M + NT * 4 * M;
begin
  n := depot_blocks();
  for t : thread_t do n := n + idle_in(t); endfor;
  return n;
end;

function in_acquire(t : thread_t) : boolean;
begin
  return th[t].pc = A_ENTER | th[t].pc = A_BODY | th[t].pc = A_POP
       | th[t].pc = A_INSTALL | th[t].pc = A_LOCK | th[t].pc = T_POP
       | th[t].pc = T_GROW | th[t].pc = T_STEAL | th[t].pc = T_STOPPED
       | (th[t].pc = WAIT_LOCK & th[t].ret = A_ENTER);
end;

-- Ghost, called at the end of every rule: an instant at which no block is
-- idle anywhere counts for every acquire in progress.
procedure note_instant();
begin
  if idle_total() = 0 then
    for t : thread_t do
      if in_acquire(t) then th[t].none_idle_seen := true; endif;
    endfor;
  endif;
end;

procedure depot_push(k : rounds_t);
begin
  if k > 0 then depot[k] := depot[k] + 1; endif;
end;

-- cache_grow_locked(): pool_map_slab() maps pool_grow_request(total)
-- blocks (initial_blocks first, then total x (grow_factor - 1) with
-- grow_factor 2, at least 1, never past max_blocks), carved into full
-- magazines of M on the depot.
procedure grow();
var n : blocks_t;
begin
  if total = 0 then n := INIT; else n := total; endif;
  if n > CAP - total then n := CAP - total; endif;
  total := total + n;
  while n > 0 do
    if n >= M then depot_push(M); n := n - M; else depot_push(n); n := 0; endif;
  endwhile;
end;

procedure go_idle(t : thread_t);
begin
  th[t].pc := IDLE;
  th[t].ret := IDLE;
  th[t].inflight := 0;
  th[t].stolen := 0;
  th[t].grew := false;
  th[t].stole := false;
  th[t].none_idle_seen := false;
  th[t].left_out := 0;
end;

--------------------------------------------------------------- start state

startstate
begin
  for k : 1..M do depot[k] := 0; endfor;
  total := 0;
  grow();                       -- magpool_create: the initial slab
  grow_locked := false;
  failures := 0;
  for t : thread_t do
    th[t].busy := false; th[t].steal := false;
    th[t].lr := 0; th[t].pr := 0; th[t].user := 0;
    go_idle(t);
  endfor;
end;

------------------------------------------------------------------- threads

ruleset t : thread_t do

  rule "magpool_acquire begins"
    th[t].pc = IDLE & th[t].user < CAP
  ==>
  begin
    th[t].pc := A_ENTER;
    th[t].none_idle_seen := (idle_total() = 0);
  end;

  rule "magpool_release begins"
    th[t].pc = IDLE & th[t].user > 0
  ==>
  begin
    th[t].pc := R_ENTER;
  end;

  -- cache_enter() + steal_pending() (the handshake itself: steal.m). A
  -- pending steal: wait_out_steal() (busy = 0, wait for the growth lock).
  ruleset e : pc_t do
    rule "cache_enter; steal_pending"
      th[t].pc = e & (e = A_ENTER | e = R_ENTER)
    ==>
    begin
      if th[t].steal then
        th[t].busy := false;
        th[t].ret := e;
        th[t].pc := WAIT_LOCK;
      else
        th[t].busy := true;
        th[t].pc := (e = A_ENTER) ? A_BODY : R_BODY;
      endif;
      note_instant();
    end;
  endruleset;

  rule "wait_out_steal: lock and unlock the growth lock; cache_enter again"
    th[t].pc = WAIT_LOCK & !grow_locked
  ==>
  begin
    th[t].pc := th[t].ret;
    th[t].ret := IDLE;
  end;

  ---------------------------------------------------------------- acquire
  -- cache_acquire_tc / cache_acquire_slow, one loop iteration on the own
  -- cache: take a round, or swap, or go to the depot.
  rule "acquire: take a round / swap / go to the depot"
    th[t].pc = A_BODY
  ==>
  begin
    if th[t].lr > 0 then
      th[t].lr := th[t].lr - 1;
      th[t].user := th[t].user + 1;
      th[t].busy := false;                  -- cache_leave
      go_idle(t);
    elsif th[t].pr > 0 then
      th[t].lr := th[t].pr;                 -- swap_magazines; `continue`
      th[t].pr := 0;
      th[t].pc := A_ENTER;                  -- (steal_pending() again)
    else
      th[t].pc := A_POP;
    endif;
    note_instant();
  end;

  -- epoch_read_lock(); depot_pop(&depot.full); epoch_read_unlock()
  ruleset k : 1..M do
    rule "acquire: depot_pop(full) gets a magazine"
      th[t].pc = A_POP & depot[k] > 0
    ==>
    begin
      depot[k] := depot[k] - 1;
      th[t].inflight := k;
      th[t].pc := A_INSTALL;
      note_instant();
    end;
  endruleset;

  rule "acquire: depot_pop(full) returns NULL: cache_leave"
    th[t].pc = A_POP & depot_mags() = 0
  ==>
  begin
    th[t].busy := false;
    th[t].pc := A_LOCK;
    note_instant();
  end;

  -- install_full(): previous (empty) to the empty stack, loaded becomes
  -- previous, the full one is loaded; `continue` (steal_pending() again).
  rule "acquire: install_full"
    th[t].pc = A_INSTALL
  ==>
  begin
    th[t].pr := th[t].lr;
    th[t].lr := th[t].inflight;
    th[t].inflight := 0;
    th[t].pc := A_ENTER;
    note_instant();
  end;

  rule "acquire: lock the growth lock"
    th[t].pc = A_LOCK & !grow_locked
  ==>
  begin
    grow_locked := true;
    th[t].pc := T_POP;
    note_instant();
  end;

  ------------------------------------------------------- take_block_locked
  -- full = stolen ? stolen : depot_pop(&depot.full); with a magazine:
  -- install_full and take a round; return it.
  ruleset k : 0..M do
    rule "take_block_locked: stolen, or depot_pop(full) gets a magazine"
      th[t].pc = T_POP
      & ((th[t].stolen > 0 & k = 0) | (th[t].stolen = 0 & k > 0 & depot[k] > 0))
    ==>
    var full : rounds_t;
    begin
      assert th[t].lr = 0 & th[t].pr = 0 "take_block_locked with rounds in the own cache";
      if k = 0 then full := th[t].stolen; th[t].stolen := 0;
      else full := k; depot[k] := depot[k] - 1; endif;
      th[t].pr := th[t].lr;
      th[t].lr := full - 1;
      th[t].user := th[t].user + 1;
      grow_locked := false;
      go_idle(t);
      note_instant();
    end;
  endruleset;

  rule "take_block_locked: depot_pop(full) returns NULL"
    th[t].pc = T_POP & th[t].stolen = 0 & depot_mags() = 0
  ==>
  begin
    th[t].pc := T_GROW;
    note_instant();
  end;

  -- cache_grow_locked(): below the cap, map a slab; `continue`.
  -- At the cap: the steal, once; then fail.
  rule "take_block_locked: grow, or steal, or fail"
    th[t].pc = T_GROW
  ==>
  begin
    if total < CAP then
      grow();
      th[t].grew := true;
      th[t].pc := T_POP;
    elsif !th[t].stole then
      -- cache_steal_locked(p, tc, NULL, NULL, &stolen): stop_owners_locked
      -- flags every other cache (membarrier: steal.m)
      th[t].stole := true;
      for u : thread_t do
        if u != t then th[u].steal := true; endif;
      endfor;
      th[t].pc := T_STEAL;
    else
      -- One more pass found nothing: fail. The claim (README): the steal
      -- waited out every owner, so when it ended every idle block was on
      -- the depot or in `stolen`; the pass after it found both empty.
      assert th[t].left_out = 0
        "an at-cap acquire failed while its steal had left idle blocks outside the depot and its hands";
      assert CHECK_LIN = 0 | th[t].none_idle_seen
        "an at-cap acquire failed though at every instant of its call some block was idle";
      failures := 1;
      grow_locked := false;
      go_idle(t);
    endif;
    note_instant();
  end;

  -- stop_owners_locked(): wait until no victim is inside a cache operation.
  rule "steal: every victim's busy == 0"
    th[t].pc = T_STEAL
    & (WAIT_OWNERS = 0 | forall u : thread_t do u = t | !th[u].busy endforall)
  ==>
  begin
    th[t].pc := T_STOPPED;
    note_instant();
  end;

  -- cache_flush_locked() on every victim: each non-empty magazine goes to
  -- the depot in exchange for an empty one, except the first, which goes to
  -- *keep (`stolen`). Then release_owners_locked() clears the flags.
  rule "steal: cache_flush_locked(victims, keep); release_owners_locked"
    th[t].pc = T_STOPPED
  ==>
  var n : blocks_t;
  begin
    for u : thread_t do
      if u != t then
        if th[u].lr > 0 then
          if th[t].stolen = 0 then th[t].stolen := th[u].lr;
          else depot_push(th[u].lr); endif;
          th[u].lr := 0;
        endif;
        if th[u].pr > 0 then
          if th[t].stolen = 0 then th[t].stolen := th[u].pr;
          else depot_push(th[u].pr); endif;
          th[u].pr := 0;
        endif;
      endif;
    endfor;
    -- cache_steal_locked (since 0.2, FIX): nothing stolen, so keep a
    -- magazine of the depot while the owners are still stopped.
    if FIX = 1 & th[t].stolen = 0 then
      for k : 1..M do
        if th[t].stolen = 0 & depot[k] > 0 then
          depot[k] := depot[k] - 1;
          th[t].stolen := k;
        endif;
      endfor;
    endif;
    -- ghost: idle blocks left outside the depot and the stealer's hands
    n := 0;
    for u : thread_t do
      if u != t then n := n + idle_in(u); endif;
    endfor;
    th[t].left_out := n;
    for u : thread_t do
      if u != t then th[u].steal := false; endif;
    endfor;
    th[t].pc := T_POP;
    note_instant();
  end;

  ---------------------------------------------------------------- release
  -- cache_release_tc / cache_release_slow, one loop iteration.
  rule "release: store a round / swap / go to the depot"
    th[t].pc = R_BODY
  ==>
  begin
    if th[t].lr < M then
      th[t].lr := th[t].lr + 1;
      th[t].user := th[t].user - 1;
      th[t].busy := false;                  -- cache_leave
      go_idle(t);
    elsif th[t].pr < M then
      th[t].lr := th[t].pr;                 -- swap_magazines; `continue`
      th[t].pr := M;
      th[t].pc := R_ENTER;
    else
      th[t].pc := R_PUSH;
    endif;
    note_instant();
  end;

  -- depot_get_empty(); previous->count = prounds; depot_push(full,
  -- previous); previous = loaded; loaded = the empty one; `continue`.
  rule "release: depot_push(full, previous); load an empty magazine"
    th[t].pc = R_PUSH
  ==>
  begin
    depot_push(th[t].pr);
    th[t].pr := th[t].lr;
    th[t].lr := 0;
    th[t].pc := R_ENTER;
    note_instant();
  end;

endruleset;

---------------------------------------------------------------- properties

function sum_user() : 0..NT * CAP;
var n : 0..NT * CAP;
begin
  n := 0;
  for t : thread_t do n := n + th[t].user; endfor;
  return n;
end;

invariant "blocks_total never exceeds max_blocks" total <= CAP;

invariant "every block is idle (depot, a cache, a magazine in hand) or with a user, once"
  total = idle_total() + sum_user();

-- Non-vacuity (a cover never hit fails the check).
cover "an at-cap acquire fails" VARIANT = 1 | failures = 1;
cover "a steal keeps a magazine for the stealer"
  exists t : thread_t do th[t].pc = T_POP & th[t].stolen > 0 endexists;
cover "a steal waits for an owner inside an operation"
  exists t : thread_t do
    th[t].pc = T_STEAL & exists u : thread_t do u != t & th[u].busy endexists
  endexists;
cover "an owner steps aside for a steal"
  exists t : thread_t do th[t].pc = WAIT_LOCK endexists;
cover "the cap is reached" total = CAP;
