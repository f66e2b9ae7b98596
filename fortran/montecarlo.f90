! Metropolis Monte Carlo for a binary lattice with a pair Hamiltonian, and the
! measurement of pair-correlation coefficients (Warren-Cowley alpha).
!
! Lattice: occupancies s(x, y) in {0, 1}, periodic, x and y in 0..n-1; spins
! sigma = 2 s - 1. Energy (units of kT):
!     E = sum_v J(v) sum_r sigma(r) sigma(r + v)
! over the given vectors v, each pair once. Positive J(v) favours unlike pairs.
! Moves conserve the concentration: one attempt swaps a randomly chosen occupied
! site with a randomly chosen empty one (Kawasaki dynamics with unrestricted
! range), so no attempt is wasted on a like pair. One sweep is n*n attempts.
!
! Status codes: 0 ok, 1 bad dimensions, 2 a vector is zero modulo n,
! 3 lattice values not in {0, 1}.
! Reference: T. R. Welberry, Diffuse X-ray Scattering and Models of Disorder (2004).
module cfsx_montecarlo
   use cfsx_kinds, only: dp, i1, i4, i8
   use cfsx_random, only: rng_uniform, rng_below
   implicit none
   private
   public :: random_lattice, metropolis_sweeps, measure_alpha, feedback_to_target
   public :: STOP_REACHED, STOP_STALLED, STOP_MAX_CYCLES

   ! Why feedback_to_target stopped (cfsx.engine.STOP_REASONS in this order).
   integer(i4), parameter :: STOP_REACHED = 0, STOP_STALLED = 1, STOP_MAX_CYCLES = 2

contains

   ! Check the shared arguments; status as in the module header.
   pure subroutine check_inputs(n, n_vec, vectors, lattice, status)
      integer(i4), intent(in) :: n, n_vec
      integer(i4), intent(in) :: vectors(2, n_vec)
      integer(i1), intent(in) :: lattice(0:n - 1, 0:n - 1)
      integer(i4), intent(out) :: status
      integer(i4) :: j
      status = 0
      if (n < 1 .or. n_vec < 0) then
         status = 1
         return
      end if
      do j = 1, n_vec
         if (modulo(vectors(1, j), n) == 0 .and. modulo(vectors(2, j), n) == 0) then
            status = 2
            return
         end if
      end do
      if (any(lattice /= 0_i1 .and. lattice /= 1_i1)) status = 3
   end subroutine check_inputs

   ! A lattice with exactly n_occupied occupied sites at uniformly random
   ! positions (partial Fisher-Yates shuffle of the site indices).
   subroutine random_lattice(n, n_occupied, state, lattice, status)
      integer(i4), intent(in) :: n, n_occupied
      integer(i8), intent(inout) :: state(4)
      integer(i1), intent(out) :: lattice(0:n - 1, 0:n - 1)
      integer(i4), intent(out) :: status
      integer(i4) :: sites(0:n*n - 1)
      integer(i4) :: i, j, tmp, n_sites
      lattice = 0_i1
      n_sites = n*n
      if (n < 1 .or. n_occupied < 0 .or. n_occupied > n_sites) then
         status = 1
         return
      end if
      status = 0
      do i = 0, n_sites - 1
         sites(i) = i
      end do
      do i = 0, n_occupied - 1
         j = i + rng_below(state, n_sites - i)
         tmp = sites(i)
         sites(i) = sites(j)
         sites(j) = tmp
         lattice(modulo(sites(i), n), sites(i)/n) = 1_i1
      end do
   end subroutine random_lattice

   ! Run n_sweeps sweeps of Metropolis swaps at fixed couplings.
   subroutine metropolis_sweeps(n, n_vec, vectors, couplings, n_sweeps, state, lattice, n_accepted, status)
      integer(i4), intent(in) :: n, n_vec, n_sweeps
      integer(i4), intent(in) :: vectors(2, n_vec)
      real(dp), intent(in) :: couplings(n_vec)
      integer(i8), intent(inout) :: state(4)
      integer(i1), intent(inout) :: lattice(0:n - 1, 0:n - 1)
      integer(i8), intent(out) :: n_accepted
      integer(i4), intent(out) :: status

      integer(i4) :: occupied(0:n*n - 1), empty(0:n*n - 1)
      ! Sites are numbered r = x + n*y; site_x, site_y give the coordinates back.
      integer(i4) :: site_x(0:n*n - 1), site_y(0:n*n - 1)
      ! neighbours(:, r): the sites r + v and r - v for every vector, as site numbers.
      integer(i4) :: neighbours(2*n_vec, 0:n*n - 1)
      real(dp) :: neighbour_coupling(2*n_vec)
      real(dp) :: field(0:n*n - 1)
      ! Coupling between two sites by their coordinate differences, in -(n-1)..n-1.
      real(dp) :: pair_coupling(1 - n:n - 1, 1 - n:n - 1)
      integer(i4) :: shift_x(n_vec), shift_y(n_vec)
      integer(i4) :: n_occupied, n_empty, x, y, i, j, k, r, q
      integer(i8) :: attempt, n_attempts
      real(dp) :: delta_energy

      n_accepted = 0_i8
      call check_inputs(n, n_vec, vectors, lattice, status)
      if (status /= 0 .or. n_sweeps <= 0) return

      n_occupied = 0
      n_empty = 0
      do y = 0, n - 1
         do x = 0, n - 1
            r = x + n*y
            site_x(r) = x
            site_y(r) = y
            if (lattice(x, y) == 1_i1) then
               occupied(n_occupied) = r
               n_occupied = n_occupied + 1
            else
               empty(n_empty) = r
               n_empty = n_empty + 1
            end if
         end do
      end do
      if (n_occupied == 0 .or. n_empty == 0) return

      shift_x = modulo(vectors(1, :), n)
      shift_y = modulo(vectors(2, :), n)
      do r = 0, n*n - 1
         do k = 1, n_vec
            neighbours(2*k - 1, r) = modulo(site_x(r) + shift_x(k), n) + n*modulo(site_y(r) + shift_y(k), n)
            neighbours(2*k, r) = modulo(site_x(r) - shift_x(k), n) + n*modulo(site_y(r) - shift_y(k), n)
         end do
      end do
      do k = 1, n_vec
         neighbour_coupling(2*k - 1:2*k) = couplings(k)
      end do
      ! pair_coupling(d) = sum_v J(v) ([d = v] + [d = -v]) modulo n: the coupling
      ! between two sites separated by d, needed when the swapped sites interact.
      pair_coupling = 0.0_dp
      do y = 1 - n, n - 1
         do x = 1 - n, n - 1
            do k = 1, n_vec
               if (modulo(x, n) == shift_x(k) .and. modulo(y, n) == shift_y(k)) &
                  pair_coupling(x, y) = pair_coupling(x, y) + couplings(k)
               if (modulo(-x, n) == shift_x(k) .and. modulo(-y, n) == shift_y(k)) &
                  pair_coupling(x, y) = pair_coupling(x, y) + couplings(k)
            end do
         end do
      end do
      ! field(r) = sum_v J(v) (sigma(r + v) + sigma(r - v)), so that flipping
      ! sigma(r) changes the energy by -2 sigma(r) field(r).
      do r = 0, n*n - 1
         field(r) = 0.0_dp
         do k = 1, 2*n_vec
            field(r) = field(r) + neighbour_coupling(k)* &
                       real(2*lattice(site_x(neighbours(k, r)), site_y(neighbours(k, r))) - 1, dp)
         end do
      end do

      n_attempts = int(n_sweeps, i8)*int(n, i8)*int(n, i8)
      do attempt = 1_i8, n_attempts
         i = rng_below(state, n_occupied)
         j = rng_below(state, n_empty)
         r = occupied(i)
         q = empty(j)
         ! sigma(r): +1 -> -1 and sigma(q): -1 -> +1
         delta_energy = 2.0_dp*(field(q) - field(r)) &
                        - 4.0_dp*pair_coupling(site_x(r) - site_x(q), site_y(r) - site_y(q))
         if (delta_energy > 0.0_dp) then
            if (rng_uniform(state) >= exp(-delta_energy)) cycle
         end if
         lattice(site_x(r), site_y(r)) = 0_i1
         lattice(site_x(q), site_y(q)) = 1_i1
         occupied(i) = q
         empty(j) = r
         n_accepted = n_accepted + 1_i8
         do k = 1, 2*n_vec
            field(neighbours(k, r)) = field(neighbours(k, r)) - 2.0_dp*neighbour_coupling(k)
            field(neighbours(k, q)) = field(neighbours(k, q)) + 2.0_dp*neighbour_coupling(k)
         end do
      end do
   end subroutine metropolis_sweeps

   ! alpha(v) = (<s(r) s(r + v)> - c**2) / (c (1 - c)), periodic, for each vector.
   ! A lattice with c = 0 or 1 has no defined alpha: status 2.
   pure subroutine measure_alpha(n, n_vec, vectors, lattice, alpha, status)
      integer(i4), intent(in) :: n, n_vec
      integer(i4), intent(in) :: vectors(2, n_vec)
      integer(i1), intent(in) :: lattice(0:n - 1, 0:n - 1)
      real(dp), intent(out) :: alpha(n_vec)
      integer(i4), intent(out) :: status
      integer(i4) :: j, x, y, shift_x, shift_y, n_occupied
      integer(i8) :: pairs
      real(dp) :: c, n_sites
      alpha = 0.0_dp
      call check_inputs(n, n_vec, vectors, lattice, status)
      if (status /= 0) return
      n_occupied = count(lattice == 1_i1)
      if (n_occupied == 0 .or. n_occupied == n*n) then
         status = 2
         return
      end if
      n_sites = real(n, dp)*real(n, dp)
      c = real(n_occupied, dp)/n_sites
      do j = 1, n_vec
         shift_x = modulo(vectors(1, j), n)
         shift_y = modulo(vectors(2, j), n)
         pairs = 0_i8
         do y = 0, n - 1
            do x = 0, n - 1
               pairs = pairs + int(lattice(x, y)*lattice(modulo(x + shift_x, n), modulo(y + shift_y, n)), i8)
            end do
         end do
         alpha(j) = (real(pairs, dp)/n_sites - c*c)/(c*(1.0_dp - c))
      end do
   end subroutine measure_alpha

   ! Welberry's feedback: repeat (sweeps_per_cycle sweeps; measure alpha) and
   ! update J(v) += gain (alpha(v) - target(v)), |J| <= coupling_bound, until
   ! every |alpha - target| <= tolerance or max_cycles cycles have run. The
   ! couplings returned are the ones the returned lattice was made with.
   ! With stall_cycles > 0 it also stops when nothing is left to gain: the misfit
   ! max |alpha - target| has not improved by more than stall_noise for
   ! stall_cycles cycles, or every component still off target has its coupling
   ! at the bound, pushed outwards; the lattice returned is then the best seen
   ! (lowest misfit), with its alpha and couplings. With adaptive = .true. each
   ! component has its own gain, multiplied by gain_up while its error keeps its
   ! sign and by gain_down when the sign flips (within [gain_min, coupling_bound]):
   ! the measured response sets the step. reason: STOP_REACHED, STOP_STALLED or
   ! STOP_MAX_CYCLES.
   subroutine feedback_to_target(n, n_vec, vectors, target, gain, sweeps_per_cycle, tolerance, &
                                 max_cycles, coupling_bound, stall_cycles, stall_noise, adaptive, &
                                 gain_up, gain_down, gain_min, state, lattice, couplings, alpha, &
                                 cycles, n_accepted, reason, status)
      integer(i4), intent(in) :: n, n_vec, sweeps_per_cycle, max_cycles, stall_cycles
      integer(i4), intent(in) :: vectors(2, n_vec)
      real(dp), intent(in) :: target(n_vec), gain, tolerance, coupling_bound, stall_noise
      logical, intent(in) :: adaptive
      real(dp), intent(in) :: gain_up, gain_down, gain_min
      integer(i8), intent(inout) :: state(4)
      integer(i1), intent(inout) :: lattice(0:n - 1, 0:n - 1)
      real(dp), intent(inout) :: couplings(n_vec)
      real(dp), intent(out) :: alpha(n_vec)
      integer(i4), intent(out) :: cycles, reason, status
      integer(i8), intent(out) :: n_accepted
      integer(i8) :: accepted
      integer(i4) :: since_best
      real(dp) :: misfit, best, best_seen
      real(dp) :: gains(n_vec), error(n_vec), previous(n_vec), best_alpha(n_vec), best_couplings(n_vec)
      integer(i1), allocatable :: best_lattice(:, :)
      logical :: pinned(n_vec)
      alpha = 0.0_dp
      cycles = 0
      n_accepted = 0_i8
      reason = STOP_MAX_CYCLES
      status = 0
      if (max_cycles < 1 .or. sweeps_per_cycle < 1 .or. stall_cycles < 0) then
         status = 1
         return
      end if
      best = huge(1.0_dp)
      best_seen = huge(1.0_dp)
      since_best = 0
      gains = gain
      previous = 0.0_dp
      if (stall_cycles > 0) allocate (best_lattice(0:n - 1, 0:n - 1))
      couplings = max(-coupling_bound, min(coupling_bound, couplings))
      do cycles = 1, max_cycles
         call metropolis_sweeps(n, n_vec, vectors, couplings, sweeps_per_cycle, state, lattice, accepted, status)
         if (status /= 0) return
         n_accepted = n_accepted + accepted
         call measure_alpha(n, n_vec, vectors, lattice, alpha, status)
         if (status /= 0) return
         error = alpha - target
         misfit = maxval(abs(error))
         if (misfit <= tolerance) then
            reason = STOP_REACHED
            exit
         end if
         if (stall_cycles > 0 .and. misfit < best_seen) then
            best_seen = misfit
            best_lattice = lattice
            best_alpha = alpha
            best_couplings = couplings
         end if
         if (cycles == max_cycles) exit
         if (stall_cycles > 0) then
            if (misfit < best - stall_noise) then
               best = misfit
               since_best = 0
            else
               since_best = since_best + 1
            end if
            pinned = abs(error) <= tolerance .or. (abs(couplings) >= coupling_bound .and. couplings*error > 0.0_dp)
            if (since_best >= stall_cycles .or. all(pinned)) then
               reason = STOP_STALLED
               exit
            end if
         end if
         if (adaptive .and. cycles > 1) then
            where (error*previous > 0.0_dp)
               gains = min(gains*gain_up, coupling_bound)
            elsewhere (error*previous < 0.0_dp)
               gains = max(gains*gain_down, gain_min)
            end where
         end if
         previous = error
         couplings = max(-coupling_bound, min(coupling_bound, couplings + gains*error))
      end do
      cycles = min(cycles, max_cycles)
      if (reason /= STOP_REACHED .and. stall_cycles > 0) then
         if (best_seen < misfit) then
            lattice = best_lattice
            alpha = best_alpha
            couplings = best_couplings
         end if
      end if
   end subroutine feedback_to_target

end module cfsx_montecarlo
