! The only file f2py sees: explicit-shape wrappers around the kernel modules.
! Sizes are hidden and inferred from the arrays; every routine returns a status
! code (0 ok) that cfsx/engine.py turns into a clear Python exception.
! Kinds are spelled as literals (integer(1), integer(4), integer(8), real(8))
! because f2py does not read the kinds module.

subroutine seed_state(seed, state)
   use cfsx_random, only: rng_seed
   implicit none
   integer(8), intent(in) :: seed
   integer(8), intent(out) :: state(4)
   call rng_seed(seed, state)
end subroutine seed_state

subroutine random_uint32(count, state, values)
   use cfsx_random, only: rng_next
   implicit none
   integer(4), intent(in) :: count
   !f2py intent(in,out) :: state
   integer(8), intent(inout) :: state(4)
   integer(8), intent(out) :: values(count)
   integer(4) :: i
   do i = 1, count
      values(i) = rng_next(state)
   end do
end subroutine random_uint32

subroutine random_below(count, high, state, values)
   use cfsx_random, only: rng_below
   implicit none
   integer(4), intent(in) :: count, high
   !f2py intent(in,out) :: state
   integer(8), intent(inout) :: state(4)
   integer(4), intent(out) :: values(count)
   integer(4) :: i
   do i = 1, count
      values(i) = rng_below(state, high)
   end do
end subroutine random_below

subroutine random_uniform(count, state, values)
   use cfsx_random, only: rng_uniform
   implicit none
   integer(4), intent(in) :: count
   !f2py intent(in,out) :: state
   integer(8), intent(inout) :: state(4)
   real(8), intent(out) :: values(count)
   integer(4) :: i
   do i = 1, count
      values(i) = rng_uniform(state)
   end do
end subroutine random_uniform

subroutine random_lattice(n, n_occupied, state, lattice, status)
   use cfsx_montecarlo, only: kernel => random_lattice
   implicit none
   integer(4), intent(in) :: n, n_occupied
   !f2py intent(in,out) :: state
   integer(8), intent(inout) :: state(4)
   integer(1), intent(out) :: lattice(n, n)
   integer(4), intent(out) :: status
   call kernel(n, n_occupied, state, lattice, status)
end subroutine random_lattice

subroutine metropolis_sweeps(n, n_vec, vectors, couplings, n_sweeps, state, lattice, n_accepted, status)
   use cfsx_montecarlo, only: kernel => metropolis_sweeps
   implicit none
   !f2py intent(hide), depend(lattice) :: n = shape(lattice, 0)
   integer(4), intent(in) :: n
   !f2py intent(hide), depend(vectors) :: n_vec = shape(vectors, 1)
   integer(4), intent(in) :: n_vec
   integer(4), intent(in) :: vectors(2, n_vec)
   !f2py intent(in), depend(n_vec) :: couplings
   real(8), intent(in) :: couplings(n_vec)
   integer(4), intent(in) :: n_sweeps
   !f2py intent(in,out) :: state
   integer(8), intent(inout) :: state(4)
   !f2py intent(in,out) :: lattice
   integer(1), intent(inout) :: lattice(n, n)
   integer(8), intent(out) :: n_accepted
   integer(4), intent(out) :: status
   call kernel(n, n_vec, vectors, couplings, n_sweeps, state, lattice, n_accepted, status)
end subroutine metropolis_sweeps

subroutine measure_alpha(n, n_vec, vectors, lattice, alpha, status)
   use cfsx_montecarlo, only: kernel => measure_alpha
   implicit none
   !f2py intent(hide), depend(lattice) :: n = shape(lattice, 0)
   integer(4), intent(in) :: n
   !f2py intent(hide), depend(vectors) :: n_vec = shape(vectors, 1)
   integer(4), intent(in) :: n_vec
   integer(4), intent(in) :: vectors(2, n_vec)
   integer(1), intent(in) :: lattice(n, n)
   !f2py intent(out), depend(n_vec) :: alpha
   real(8), intent(out) :: alpha(n_vec)
   integer(4), intent(out) :: status
   call kernel(n, n_vec, vectors, lattice, alpha, status)
end subroutine measure_alpha

subroutine feedback_to_target(n, n_vec, vectors, target, gain, sweeps_per_cycle, tolerance, max_cycles, &
                              coupling_bound, stall_cycles, stall_noise, adaptive, gain_up, gain_down, gain_min, &
                              state, lattice, couplings, alpha, cycles, n_accepted, reason, status)
   use cfsx_montecarlo, only: kernel => feedback_to_target
   implicit none
   !f2py intent(hide), depend(lattice) :: n = shape(lattice, 0)
   integer(4), intent(in) :: n
   !f2py intent(hide), depend(vectors) :: n_vec = shape(vectors, 1)
   integer(4), intent(in) :: n_vec
   integer(4), intent(in) :: vectors(2, n_vec)
   !f2py intent(in), depend(n_vec) :: target
   real(8), intent(in) :: target(n_vec)
   real(8), intent(in) :: gain, tolerance, coupling_bound, stall_noise, gain_up, gain_down, gain_min
   integer(4), intent(in) :: sweeps_per_cycle, max_cycles, stall_cycles
   logical, intent(in) :: adaptive
   !f2py intent(in,out) :: state
   integer(8), intent(inout) :: state(4)
   !f2py intent(in,out) :: lattice
   integer(1), intent(inout) :: lattice(n, n)
   !f2py intent(in,out), depend(n_vec) :: couplings
   real(8), intent(inout) :: couplings(n_vec)
   !f2py intent(out), depend(n_vec) :: alpha
   real(8), intent(out) :: alpha(n_vec)
   integer(4), intent(out) :: cycles, reason, status
   integer(8), intent(out) :: n_accepted
   call kernel(n, n_vec, vectors, target, gain, sweeps_per_cycle, tolerance, max_cycles, coupling_bound, &
               stall_cycles, stall_noise, adaptive, gain_up, gain_down, gain_min, state, lattice, couplings, &
               alpha, cycles, n_accepted, reason, status)
end subroutine feedback_to_target

subroutine lot_intensity(n, lattice, concentration, lot_size, n_lots, origins, n_h, h_values, n_k, k_values, &
                         intensity, status)
   use cfsx_diffraction, only: kernel => lot_intensity
   implicit none
   !f2py intent(hide), depend(lattice) :: n = shape(lattice, 0)
   integer(4), intent(in) :: n
   integer(1), intent(in) :: lattice(n, n)
   real(8), intent(in) :: concentration
   integer(4), intent(in) :: lot_size
   !f2py intent(hide), depend(origins) :: n_lots = shape(origins, 1)
   integer(4), intent(in) :: n_lots
   integer(4), intent(in) :: origins(2, n_lots)
   !f2py intent(hide), depend(h_values) :: n_h = len(h_values)
   integer(4), intent(in) :: n_h
   real(8), intent(in) :: h_values(n_h)
   !f2py intent(hide), depend(k_values) :: n_k = len(k_values)
   integer(4), intent(in) :: n_k
   real(8), intent(in) :: k_values(n_k)
   !f2py intent(out), depend(n_h,n_k) :: intensity
   real(8), intent(out) :: intensity(n_h, n_k)
   integer(4), intent(out) :: status
   call kernel(n, lattice, concentration, lot_size, n_lots, origins, n_h, h_values, n_k, k_values, &
               intensity, status)
end subroutine lot_intensity

subroutine lot_intensity_periodic(n, lattice, concentration, lot_size, n_lots, origins, period, n_k, k_values, &
                                  intensity, status)
   use cfsx_diffraction, only: kernel => lot_intensity_periodic
   implicit none
   !f2py intent(hide), depend(lattice) :: n = shape(lattice, 0)
   integer(4), intent(in) :: n
   integer(1), intent(in) :: lattice(n, n)
   real(8), intent(in) :: concentration
   integer(4), intent(in) :: lot_size
   !f2py intent(hide), depend(origins) :: n_lots = shape(origins, 1)
   integer(4), intent(in) :: n_lots
   integer(4), intent(in) :: origins(2, n_lots)
   integer(4), intent(in) :: period
   !f2py intent(hide), depend(k_values) :: n_k = len(k_values)
   integer(4), intent(in) :: n_k
   real(8), intent(in) :: k_values(n_k)
   !f2py intent(out), depend(period,n_k) :: intensity
   real(8), intent(out) :: intensity(period, n_k)
   integer(4), intent(out) :: status
   call kernel(n, lattice, concentration, lot_size, n_lots, origins, period, n_k, k_values, intensity, status)
end subroutine lot_intensity_periodic

subroutine cosine_transform(n_d, displacements, weights, n_h, h_values, n_k, k_values, intensity, status)
   use cfsx_diffraction, only: kernel => cosine_transform
   implicit none
   !f2py intent(hide), depend(displacements) :: n_d = len(displacements)
   integer(4), intent(in) :: n_d
   integer(4), intent(in) :: displacements(n_d)
   !f2py intent(in), depend(n_d) :: weights
   real(8), intent(in) :: weights(n_d, n_d)
   !f2py intent(hide), depend(h_values) :: n_h = len(h_values)
   integer(4), intent(in) :: n_h
   real(8), intent(in) :: h_values(n_h)
   !f2py intent(hide), depend(k_values) :: n_k = len(k_values)
   integer(4), intent(in) :: n_k
   real(8), intent(in) :: k_values(n_k)
   !f2py intent(out), depend(n_h,n_k) :: intensity
   real(8), intent(out) :: intensity(n_h, n_k)
   integer(4), intent(out) :: status
   call kernel(n_d, displacements, weights, n_h, h_values, n_k, k_values, intensity, status)
end subroutine cosine_transform
