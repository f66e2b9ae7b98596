! The engine's own random generator: xoshiro128** (Blackman & Vigna, 2018).
!
! Four 32-bit words of state, each held in the low half of an int64 so that every
! operation (including the multiplications) stays inside the int64 range: the
! stream is then defined by standard Fortran alone and is the same on any machine
! and compiler. The state is always an argument; nothing is saved between calls.
module cfsx_random
   use cfsx_kinds, only: dp, i4, i8
   implicit none
   private
   public :: rng_seed, rng_next, rng_uniform, rng_below

   integer(i8), parameter :: mask32 = 4294967295_i8
   integer(i8), parameter :: mask16 = 65535_i8

contains

   ! (a * b) mod 2**32 for a, b in [0, 2**32), without leaving the int64 range.
   pure function mul32(a, b) result(r)
      integer(i8), intent(in) :: a, b
      integer(i8) :: r
      r = iand(iand(a, mask16)*b + shiftl(iand(shiftr(a, 16)*iand(b, mask16), mask16), 16), mask32)
   end function mul32

   pure function rotl32(x, k) result(r)
      integer(i8), intent(in) :: x
      integer, intent(in) :: k
      integer(i8) :: r
      r = iand(ior(shiftl(x, k), shiftr(x, 32 - k)), mask32)
   end function rotl32

   ! MurmurHash3's 32-bit finaliser: a bijective mixer used only for seeding.
   pure function mix32(x) result(h)
      integer(i8), intent(in) :: x
      integer(i8) :: h
      h = iand(x, mask32)
      h = ieor(h, shiftr(h, 16))
      h = mul32(h, 2246822507_i8)   ! 0x85ebca6b
      h = ieor(h, shiftr(h, 13))
      h = mul32(h, 3266489909_i8)   ! 0xc2b2ae35
      h = ieor(h, shiftr(h, 16))
   end function mix32

   ! Expand one 64-bit seed (any bit pattern) into a non-zero generator state.
   pure subroutine rng_seed(seed, state)
      integer(i8), intent(in) :: seed
      integer(i8), intent(out) :: state(4)
      integer(i8) :: low, high, counter
      integer :: i
      low = iand(seed, mask32)
      high = iand(shiftr(seed, 32), mask32)
      counter = low
      do i = 1, 4
         counter = iand(counter + 2654435769_i8, mask32)   ! 0x9e3779b9, golden ratio
         state(i) = mix32(ieor(counter, mix32(ieor(high, int(i, i8)))))
      end do
      if (all(state == 0_i8)) state(1) = 1_i8
   end subroutine rng_seed

   ! Next 32-bit output, in [0, 2**32).
   function rng_next(state) result(value)
      integer(i8), intent(inout) :: state(4)
      integer(i8) :: value, t
      ! Words are below 2**32, so 5x and 9x stay far inside the int64 range.
      value = iand(rotl32(iand(state(2)*5_i8, mask32), 7)*9_i8, mask32)
      t = iand(shiftl(state(2), 9), mask32)
      state(3) = ieor(state(3), state(1))
      state(4) = ieor(state(4), state(2))
      state(2) = ieor(state(2), state(3))
      state(1) = ieor(state(1), state(4))
      state(3) = ieor(state(3), t)
      state(4) = rotl32(state(4), 11)
   end function rng_next

   ! Uniform double in [0, 1) with 32 random bits.
   function rng_uniform(state) result(u)
      integer(i8), intent(inout) :: state(4)
      real(dp) :: u
      u = real(rng_next(state), dp)*2.3283064365386963e-10_dp   ! 2**-32
   end function rng_uniform

   ! Integer in [0, n) by multiply-shift (bias below n / 2**32); n in [1, 2**31).
   function rng_below(state, n) result(k)
      integer(i8), intent(inout) :: state(4)
      integer(i4), intent(in) :: n
      integer(i4) :: k
      k = int(shiftr(rng_next(state)*int(n, i8), 32), i4)
   end function rng_below

end module cfsx_random
