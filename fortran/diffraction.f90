! Diffraction from a binary lattice as separable transforms (matrix products).
!
! Lot average: for each L x L lot at a given origin (periodic wrap),
!     F(h, k) = sum_{x,y} (s(x, y) - c) exp(2 pi i (h x + k y)),  I = |F|**2 / L**2,
! averaged over the lots. With a = s - c, F = E_h a E_k^T where E_h(h, x) =
! exp(2 pi i h x), so each lot costs two small real-by-complex matrix products
! instead of an M**2 L**2 direct sum.
!
! Cosine transform: I(h, k) = sum_{a,b} G(a, b) cos(2 pi (h d_a + k d_b)), the
! Warren-Cowley sum for weights G on a square window of displacements d.
!
! Status codes: 0 ok, 1 bad dimensions (lot larger than lattice, empty grid),
! 2 bad values (origin outside the lattice).
module cfsx_diffraction
   use cfsx_kinds, only: dp, i1, i4
   implicit none
   private
   public :: lot_intensity, cosine_transform

   real(dp), parameter :: two_pi = 6.283185307179586476925286766559_dp

contains

   subroutine lot_intensity(n, lattice, concentration, lot_size, n_lots, origins, n_h, h_values, &
                            n_k, k_values, intensity, status)
      integer(i4), intent(in) :: n, lot_size, n_lots, n_h, n_k
      integer(i1), intent(in) :: lattice(0:n - 1, 0:n - 1)
      real(dp), intent(in) :: concentration
      integer(i4), intent(in) :: origins(2, n_lots)
      real(dp), intent(in) :: h_values(n_h), k_values(n_k)
      real(dp), intent(out) :: intensity(n_h, n_k)
      integer(i4), intent(out) :: status

      real(dp) :: cos_h(n_h, 0:lot_size - 1), sin_h(n_h, 0:lot_size - 1)
      real(dp) :: cos_k(0:lot_size - 1, n_k), sin_k(0:lot_size - 1, n_k)
      real(dp) :: lot(0:lot_size - 1, 0:lot_size - 1)
      real(dp) :: lot_cos(0:lot_size - 1, n_k), lot_sin(0:lot_size - 1, n_k)
      real(dp) :: cos_plus_sin_h(n_h, 0:lot_size - 1)
      real(dp) :: cos_term(n_h, n_k), sin_term(n_h, n_k), imag_part(n_h, n_k)
      integer(i4) :: m, x, y

      intensity = 0.0_dp
      status = 0
      if (n < 1 .or. lot_size < 1 .or. lot_size > n .or. n_lots < 1 .or. n_h < 1 .or. n_k < 1) then
         status = 1
         return
      end if
      if (any(origins < 0 .or. origins >= n)) then
         status = 2
         return
      end if
      do x = 0, lot_size - 1
         cos_h(:, x) = cos(two_pi*h_values*x)
         sin_h(:, x) = sin(two_pi*h_values*x)
         cos_k(x, :) = cos(two_pi*k_values*x)
         sin_k(x, :) = sin(two_pi*k_values*x)
      end do
      cos_plus_sin_h = cos_h + sin_h

      do m = 1, n_lots
         do y = 0, lot_size - 1
            do x = 0, lot_size - 1
               lot(x, y) = real(lattice(modulo(origins(1, m) + x, n), modulo(origins(2, m) + y, n)), dp) &
                           - concentration
            end do
         end do
         lot_cos = matmul(lot, cos_k)
         lot_sin = matmul(lot, sin_k)
         ! Complex product (C + iS)(P + iQ) with three real products (Gauss):
         ! real = CP - SQ, imag = (C + S)(P + Q) - CP - SQ.
         cos_term = matmul(cos_h, lot_cos)
         sin_term = matmul(sin_h, lot_sin)
         imag_part = matmul(cos_plus_sin_h, lot_cos + lot_sin) - cos_term - sin_term
         intensity = intensity + (cos_term - sin_term)**2 + imag_part**2
      end do
      intensity = intensity/(real(n_lots, dp)*real(lot_size, dp)**2)
   end subroutine lot_intensity

   subroutine cosine_transform(n_d, displacements, weights, n_h, h_values, n_k, k_values, intensity, status)
      integer(i4), intent(in) :: n_d, n_h, n_k
      integer(i4), intent(in) :: displacements(n_d)
      real(dp), intent(in) :: weights(n_d, n_d)
      real(dp), intent(in) :: h_values(n_h), k_values(n_k)
      real(dp), intent(out) :: intensity(n_h, n_k)
      integer(i4), intent(out) :: status
      real(dp) :: cos_h(n_h, n_d), sin_h(n_h, n_d), cos_k(n_d, n_k), sin_k(n_d, n_k)
      integer(i4) :: a

      intensity = 0.0_dp
      status = 0
      if (n_d < 1 .or. n_h < 1 .or. n_k < 1) then
         status = 1
         return
      end if
      do a = 1, n_d
         cos_h(:, a) = cos(two_pi*h_values*displacements(a))
         sin_h(:, a) = sin(two_pi*h_values*displacements(a))
         cos_k(a, :) = cos(two_pi*k_values*displacements(a))
         sin_k(a, :) = sin(two_pi*k_values*displacements(a))
      end do
      ! cos(p + q) = cos p cos q - sin p sin q
      intensity = matmul(cos_h, matmul(weights, cos_k)) - matmul(sin_h, matmul(weights, sin_k))
   end subroutine cosine_transform

end module cfsx_diffraction
